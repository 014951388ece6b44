"""APQ's evolution at the paper's scale (population 100, 50,000 distinct candidates) on apq-mbv2 with
the shipped BitFusion table and a predictor of APQ's shape (772 -> 3 x 400 -> 1), against a loop in
the style of APQ's released finder: a spec dict per candidate, deep copies for mutation and crossover,
one predictor call per candidate, constraint re-draws without bound. Both run at one torch thread.

Reports the distinct fraction of the batched run (budget spent on distinct networks; target >= 0.99)
and the per-candidate speed-up (target >= 25x). Target for the batched run: <= 5 s.

Run: python benchmarks/bench_evolution.py
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from _common import write

from apqopt import get_space
from apqopt.hardware.lut import apq_key, load_shipped
from apqopt.interop.apq import from_apq_spec, to_apq_spec
from apqopt.predictor import AccuracyPredictor
from apqopt.search import make_searcher
from apqopt.search.problem import Problem

BUDGET, LOOP_BUDGET, LATENCY = 50_000, 1_000, 9.0
POP, PARENTS, MUTATIONS, CROSSOVERS, PROB = 100, 25, 50, 50, 0.1


def apq_style_finder(space, lut, pred, budget: int, rng: np.random.Generator) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """APQ's released evolution finder, re-expressed: spec dicts, deep copies, one candidate at a time."""
    keys = ("ks", "e", "pw_w_bits_setting", "pw_a_bits_setting", "dw_w_bits_setting", "dw_a_bits_setting")

    def random_spec() -> dict:
        return to_apq_spec(space, space.to_candidates(space.sample(1, rng))[0])

    table = {apq_key(k[:7], k[7], k[8]): {"latency": v[0], "energy": v[1]} for k, v in lut.entries.items()}

    def latency(spec: dict) -> float:  # APQ's efficiency predictor: a string key per layer into its JSON table
        cand = from_apq_spec(space, spec)
        layers = space.layers(cand)
        return lut.head[0] + lut.tail[0] + sum(table[apq_key(x.shape, x.w_bits, x.a_bits)]["latency"] for x in layers)

    def predict(spec: dict) -> float:  # one predictor call per candidate
        genes = space.from_candidates([from_apq_spec(space, spec)])
        return float(pred.predict_genes(genes)[0])

    def feasible(make) -> dict:  # type: ignore[no-untyped-def]
        while True:  # no bound, as in APQ's code
            spec = make()
            if latency(spec) <= LATENCY:
                return spec

    def mutate(parent: dict) -> dict:
        child = copy.deepcopy(parent)
        fresh = random_spec()
        for i in range(len(child["ks"])):
            if rng.random() < PROB:
                for k in keys:
                    child[k][i] = fresh[k][i]
        for i in range(len(child["d"])):
            if rng.random() < PROB:
                child["d"][i] = fresh["d"][i]
        return child

    def cross(a: dict, b: dict) -> dict:
        child = copy.deepcopy(a)
        for k in (*keys, "d"):
            child[k] = [x if rng.random() < 0.5 else y for x, y in zip(a[k], b[k])]
        return child

    population = [feasible(random_spec) for _ in range(POP)]
    scores = [predict(s) for s in population]
    done = len(population)
    while done < budget:
        order = np.argsort(scores)[::-1][:PARENTS]
        parents = [population[i] for i in order]
        kids = [feasible(lambda p=parents: mutate(p[rng.integers(PARENTS)])) for _ in range(MUTATIONS)]
        kids += [
            feasible(lambda p=parents: cross(p[rng.integers(PARENTS)], p[rng.integers(PARENTS)]))
            for _ in range(CROSSOVERS)
        ]
        population = parents + kids
        scores = [scores[i] for i in order] + [predict(s) for s in kids]
        done += len(kids)
    return done, max(scores)


def main() -> None:
    torch.set_num_threads(1)
    space, lut = get_space("apq-mbv2"), load_shipped("apq-mbv2")
    pred = AccuracyPredictor("apq-mbv2", "branch").init_weights()
    lut.price(space, space.sample(1, 0))  # compile the table once, as any long-lived process would
    problem = Problem(space, pred, lut, constraints={"latency": LATENCY})
    t0 = time.perf_counter()
    res = make_searcher("evolution", seed=0).run(problem, BUDGET)
    t_batched = time.perf_counter() - t0
    distinct = len({r.tobytes() for r in space.canonical(res.evaluated.genes)})
    t0 = time.perf_counter()
    n_loop, _ = apq_style_finder(space, lut, pred, LOOP_BUDGET, np.random.default_rng(0))
    t_loop = time.perf_counter() - t0
    per_b, per_l = t_batched / BUDGET, t_loop / n_loop
    b = res.best()
    speedup = per_l / per_b
    write(
        "evolution",
        {
            "torch_threads": 1,
            "budget": BUDGET,
            "generations": res.notes["generations"],
            "distinct_networks": distinct,
            "distinct_fraction": distinct / BUDGET,
            "requested": res.notes["requested"],
            "batched_s": t_batched,
            "batched_eval_s": res.eval_s,
            "apq_style_candidates": n_loop,
            "apq_style_s": t_loop,
            "per_candidate_speedup": speedup,
            "target_s": 5.0,
            "meets_target": t_batched <= 5.0,
            "meets_speedup_target": speedup >= 25,
            "meets_distinct_target": distinct / BUDGET >= 0.99,
            "best_latency_ms": float(res.evaluated.latency[b]),
            "latency_limit_ms": LATENCY,
        },
        [
            ["run (1 torch thread)", "candidates", "seconds", "per candidate"],
            ["apqopt evolution (batched, distinct networks)", BUDGET, f"{t_batched:.2f}", f"{per_b * 1e6:.0f} µs"],
            ["APQ-finder style (spec dicts, one at a time)", n_loop, f"{t_loop:.2f}", f"{per_l * 1e6:.0f} µs"],
            ["ratio", "", "", f"{speedup:.0f}x"],
        ],
        notes=f"{res.notes['generations']} generations, latency <= {LATENCY} ms; {distinct:,} distinct networks "
        f"in the {BUDGET:,}-candidate budget (fraction {distinct / BUDGET:.3f}; {res.notes['requested']:,} rows "
        f"asked for, known networks free). Of the batched time, {res.eval_s:.2f} s is evaluation (predictor + "
        f"LUT). Targets: <= 5 s {'met' if t_batched <= 5 else 'NOT met'}; >= 25x "
        f"{'met' if speedup >= 25 else 'NOT met'}; distinct >= 0.99 "
        f"{'met' if distinct / BUDGET >= 0.99 else 'NOT met'}.",
    )


if __name__ == "__main__":
    main()
