"""Live-study throughput: trials/s with 1, 2 and 4 worker processes, PostgreSQL vs SQLite, side by side.

Each configuration runs one fresh live study (optuna NSGA-II, fmnist, a predictor of the shipped
shape) with `apqopt worker` processes; throughput is complete trials over the span from the first
trial's start to the last trial's end (process start-up excluded). A private PostgreSQL server is
started for the run (tests/servers.py). Note: this machine has 2 cores, so beyond 2 workers the
processes share cores; what scales is how well the storage handles concurrent writers.

Run: python benchmarks/bench_live.py [--budget 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from _common import write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apqopt.live import LiveSpec, create_live_study
from apqopt.predictor import AccuracyPredictor
from tests.servers import private_postgres

WORKERS = (1, 2, 4)


def run(url: str, name: str, spec: LiveSpec, workers: int) -> float:
    create_live_study(spec, url, name)
    cmd = [sys.executable, "-m", "apqopt.cli", "worker", "--study", name, "--storage", url, "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(workers)]
    if any(p.wait() for p in procs):
        raise RuntimeError(f"a worker failed on {name}")
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == spec.budget
    span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    return spec.budget / span.total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    pred = tmp / "quant.pt"
    AccuracyPredictor("fmnist", variant="branch").init_weights().save(pred)
    spec = LiveSpec("search", budget=args.budget, predictor=str(pred), constraints={"latency": 0.6}, population=20)
    rates: dict[str, dict[int, float]] = {"sqlite": {}, "postgresql": {}}
    with private_postgres() as pg:
        for w in WORKERS:
            rates["sqlite"][w] = run(f"sqlite:///{tmp / f'w{w}.db'}", f"w{w}", spec, w)
            rates["postgresql"][w] = run(pg, f"w{w}", spec, w)
            print(w, rates["sqlite"][w], rates["postgresql"][w], flush=True)
    table = [["workers", "SQLite trials/s", "PostgreSQL trials/s", "PostgreSQL / SQLite"]]
    for w in WORKERS:
        s, p = rates["sqlite"][w], rates["postgresql"][w]
        table.append([w, f"{s:.2f}", f"{p:.2f}", f"{p / s:.2f}x"])
    scale = {k: {w: v[w] / v[1] for w in WORKERS} for k, v in rates.items()}
    ups = {k: ", ".join(f"{w}: {s[w]:.2f}x" for w in WORKERS) for k, s in scale.items()}
    notes = (
        f"Budget {args.budget} trials per configuration (fmnist, 125 categorical params, NSGA-II sampler). "
        f"Speed-up over 1 worker: SQLite {ups['sqlite']}; PostgreSQL {ups['postgresql']}. "
        "SQLite serialises every write on one file lock, so extra writers mostly wait; PostgreSQL takes "
        "concurrent transactions, but on 2 cores the server itself competes with the workers."
    )
    write("live_throughput", {"budget": args.budget, "trials_per_s": rates, "speedup": scale}, table, notes)


if __name__ == "__main__":
    main()
