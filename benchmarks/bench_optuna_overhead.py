"""Optuna overhead: apqopt's optuna-* searchers' time per trial against Optuna's own minimal
ask/tell loop over the same parameters, in memory and on SQLite, in one run.

Run: python benchmarks/bench_optuna_overhead.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import optuna
from _common import write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.search import make_searcher
from apqopt.search.problem import Problem

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_MEM, N_SQL = 300, 60


def minimal_loop(storage: str | None, n: int, sampler: optuna.samplers.BaseSampler) -> float:
    """Optuna alone: ask, suggest every gene, tell two values."""
    sp = get_space("fmnist")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler, storage=storage)
    names = sp.gene_names()
    t0 = time.perf_counter()
    for _ in range(n):
        t = study.ask()
        for g, name in enumerate(names):
            t.suggest_categorical(name, list(sp.gene_values(g)))
        study.tell(t, [0.9, 1.0])
    return (time.perf_counter() - t0) / n


def main() -> None:
    sp = get_space("fmnist")
    w = np.random.default_rng(0).normal(size=sp.encoding_width)

    def predictor(genes: np.ndarray) -> np.ndarray:  # a fixed stand-in: only Optuna's cost is measured
        return 0.85 + 0.001 * sp.encode(genes) @ w

    rows = [["storage", "sampler", "trials", "Optuna alone ms/trial", "apqopt searcher ms/trial", "overhead"]]
    data = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, storage, n in (("in memory", None, N_MEM), ("SQLite", f"sqlite:///{tmp}/o.db", N_SQL)):
            for sampler in ("nsga2", "tpe"):
                base = minimal_loop(
                    storage,
                    n,
                    optuna.samplers.NSGAIISampler(seed=0)
                    if sampler == "nsga2"
                    else optuna.samplers.TPESampler(seed=0, multivariate=True),
                )
                p = Problem(sp, predictor, load_shipped("fmnist"), constraints={"latency": 0.8})
                res = make_searcher(f"optuna-{sampler}", seed=0, batch=50, storage=storage).run(p, n)
                ours = res.wall_s / n
                data[f"{label}/{sampler}"] = {"optuna_ms": 1e3 * base, "apqopt_ms": 1e3 * ours, "trials": n}
                rows.append([label, sampler, n, f"{1e3 * base:.1f}", f"{1e3 * ours:.1f}", f"{ours / base:.2f}x"])
    write(
        "optuna_overhead",
        data,
        rows,
        notes="apqopt adds the batched evaluation, constraint recording (both forms) and user attrs per trial.",
    )


if __name__ == "__main__":
    main()
