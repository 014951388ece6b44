"""Recording cost, side by side in one run: (1) writing the same finished fmnist trials (125 categorical
params each) into SQLite with Optuna's own `study.add_trials` and with apqopt's batched
`studies.add_trials`, and into a journal file; (2) the share of an `apqopt run` spent recording: the
run's own comparison (random, evolution, pymoo NSGA-II, Optuna NSGA-II; 3 seeds; 1,000 distinct
networks; latency <= 0.5 ms; 2 candidates per run measured on the supernet) with every call to
`studies.record` timed.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_storage.py   (one torch thread; --quick skips part 2)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import write

import apqopt.studies as studies
from apqopt.problem_spec import load_problem
from apqopt.record import RecordCodec
from apqopt.search import make_searcher

N = 1000


def per_trial(tmp: str) -> dict[str, Any]:
    p = load_problem("fmnist", latency=0.5)
    ev = make_searcher("random", seed=0).run(p, N).evaluated
    codec = RecordCodec.of(p)
    dists = codec.distributions()
    trials = [codec.frozen_trial(ev, i, dists) for i in range(N)]
    out = {}
    for label, url, ours in (
        ("sqlite, optuna add_trials", f"sqlite:///{tmp}/a.db", False),
        ("sqlite, apqopt add_trials", f"sqlite:///{tmp}/b.db", True),
        ("journal, apqopt add_trials", str(Path(tmp) / "c.log"), True),
    ):
        store = studies.open_storage(url)
        study = codec.create_study(store, "bench")
        t0 = time.perf_counter()
        if ours:
            studies.add_trials(store, study, trials)
        else:
            study.add_trials(trials)
        out[label] = time.perf_counter() - t0
    return out


def run_share(tmp: str) -> dict[str, Any]:
    from apqopt.cli.common import RUN_SEARCHERS
    from apqopt.compare import compare, supernet_measurer
    from apqopt.shipped import supernet_path
    from apqopt.supernet.train import load_supernet

    spent = [0.0]
    original = studies.record

    def timed_record(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    studies.record = timed_record  # compare imports it at call time
    try:
        t0 = time.perf_counter()
        report, _ = compare(
            load_problem("fmnist", latency=0.5),
            RUN_SEARCHERS,
            [0, 1, 2],
            1000,
            storage=f"sqlite:///{tmp}/run.db",
            progress=False,
            predictor="shipped",
            verify_top=2,
            measurer=supernet_measurer(load_supernet(supernet_path("fmnist"))),
        )
        wall = time.perf_counter() - t0
    finally:
        studies.record = original
    trials = sum(r.distinct for r in report.runs)
    return {"wall_s": wall, "record_s": spent[0], "share": spent[0] / wall, "trials_recorded": trials}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cost = per_trial(tmp)
        share = None if "--quick" in sys.argv else run_share(tmp)
    rows = [["what", "trials", "seconds", "ms / trial"]]
    for label, s in cost.items():
        rows.append([label, N, f"{s:.2f}", f"{1e3 * s / N:.2f}"])
    data: dict[str, Any] = {"threads": torch.get_num_threads(), "per_trial_s": cost}
    speedup = cost["sqlite, optuna add_trials"] / cost["sqlite, apqopt add_trials"]
    notes = (
        f"batched writes are {speedup:.0f}x Optuna's add_trials on SQLite ({torch.get_num_threads()} torch thread(s))"
    )
    if share is not None:
        data["apqopt_run"] = share
        rows.append(
            [
                "apqopt run's comparison (12 runs, verify 2)",
                share["trials_recorded"],
                f"{share['record_s']:.1f} of {share['wall_s']:.0f}",
                f"recording = {100 * share['share']:.1f}% of the wall time (target <= 10%)",
            ]
        )
        notes += f"; recording is {100 * share['share']:.1f}% of an `apqopt run` comparison's wall time"
    data["speedup"] = speedup
    write("storage", data, rows, notes=notes)


if __name__ == "__main__":
    main()
