"""APQ's evolution at the paper's scale (population 100 x 500 generations = 50,000 candidates) on
apq-mbv2 with the shipped BitFusion table and a predictor of APQ's shape (772 -> 3 x 400 -> 1), batched,
against the same algorithm evaluating one candidate at a time (per-candidate rate, same run).
Target: <= 5 s for the batched run on this 2-core machine.

Run: python benchmarks/bench_evolution.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.predictor import AccuracyPredictor
from apqopt.search import make_searcher
from apqopt.search.problem import Problem

BUDGET, LOOP_BUDGET, LATENCY = 50_000, 1_000, 9.0


def main() -> None:
    space, lut = get_space("apq-mbv2"), load_shipped("apq-mbv2")
    pred = AccuracyPredictor("apq-mbv2", "branch").init_weights()
    lut.price(space, space.sample(1, 0))  # compile the table once, as any long-lived process would

    def unbatched(genes: np.ndarray) -> np.ndarray:
        return np.concatenate([pred.predict_genes(g[None]) for g in genes])

    class OneByOne(Problem):
        def cost(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows = [super(OneByOne, self).cost(g[None]) for g in genes]
            return tuple(np.concatenate([r[i] for r in rows]) for i in range(3))  # type: ignore[return-value]

    batched = Problem(space, pred.predict_genes, lut, constraints={"latency": LATENCY})
    t0 = time.perf_counter()
    res = make_searcher("evolution", seed=0).run(batched, BUDGET)
    t_batched = time.perf_counter() - t0
    slow = OneByOne(space, unbatched, lut, constraints={"latency": LATENCY})
    t0 = time.perf_counter()
    make_searcher("evolution", seed=0).run(slow, LOOP_BUDGET)
    t_loop = time.perf_counter() - t0
    per_b, per_l = t_batched / BUDGET, t_loop / LOOP_BUDGET
    b = res.best()
    write(
        "evolution",
        {
            "budget": BUDGET,
            "generations": res.notes["generations"],
            "batched_s": t_batched,
            "batched_eval_s": res.eval_s,
            "unbatched_budget": LOOP_BUDGET,
            "unbatched_s": t_loop,
            "per_candidate_speedup": per_l / per_b,
            "target_s": 5.0,
            "meets_target": t_batched <= 5.0,
            "best_latency_ms": float(res.evaluated.latency[b]),
            "latency_limit_ms": LATENCY,
        },
        [
            ["run", "candidates", "seconds", "per candidate"],
            ["batched (Problem.evaluate on each generation)", BUDGET, f"{t_batched:.2f}", f"{per_b * 1e6:.0f} µs"],
            ["one candidate at a time (same algorithm)", LOOP_BUDGET, f"{t_loop:.2f}", f"{per_l * 1e6:.0f} µs"],
            ["ratio", "", "", f"{per_l / per_b:.0f}x"],
        ],
        notes=f"{res.notes['generations']} generations, latency <= {LATENCY} ms; of the batched time, "
        f"{res.eval_s:.2f} s is evaluation (predictor + LUT), the rest selection/variation/re-sampling. "
        f"Target <= 5 s: {'met' if t_batched <= 5 else 'NOT met'}.",
    )


if __name__ == "__main__":
    main()
