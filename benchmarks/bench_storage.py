"""Recording cost per storage, side by side: writing a finished fmnist run (125 categorical params per
trial) as trials into SQLite and into a journal file, against the search itself.
This is what sets how many trials `apqopt.studies.record` writes per storage kind.

Run: python benchmarks/bench_storage.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.search import make_searcher
from apqopt.search.problem import Problem
from apqopt.studies import record

N = 200


def main() -> None:
    sp = get_space("fmnist")
    w = np.random.default_rng(0).normal(size=sp.encoding_width)

    def predictor(genes: np.ndarray) -> np.ndarray:  # a fixed linear stand-in: only write cost is measured
        return 0.85 + 0.001 * sp.encode(genes) @ w

    rows = [["storage", "trials", "write s", "ms / trial", "search s"]]
    data = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, url in (("sqlite", f"sqlite:///{tmp}/s.db"), ("journal", str(Path(tmp) / "s.log"))):
            p = Problem(sp, predictor, load_shipped("fmnist"), constraints={"latency": 0.8})
            res = make_searcher("evolution", seed=0).run(p, N)
            t0 = time.perf_counter()
            record(res, p, url, f"bench-{kind}", full_limit=N)
            dt = time.perf_counter() - t0
            data[kind] = {"trials": N, "write_s": dt, "ms_per_trial": 1e3 * dt / N, "search_s": res.wall_s}
            rows.append([kind, N, f"{dt:.2f}", f"{1e3 * dt / N:.1f}", f"{res.wall_s:.3f}"])
    ratio = data["sqlite"]["ms_per_trial"] / data["journal"]["ms_per_trial"]
    data["sqlite_over_journal"] = ratio
    write(
        "storage",
        data,
        rows,
        notes=f"SQLite costs {ratio:.0f}x a journal file per trial; `record` therefore writes every candidate "
        "up to 250 evaluations on SQL storages and 5,000 on journal files, and the non-dominated set + the "
        "compressed history inside the study beyond.",
    )


if __name__ == "__main__":
    main()
