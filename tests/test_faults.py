"""Fault injection: SIGKILL at random moments of real commands, then the same command again.

What must hold (the README's reliability section quotes this suite): after the rerun, the storage and
the files hold exactly what one uninterrupted run holds -- every study whole, no trial twice, no record
lost or duplicated, byte-identical tables -- ignoring only timing fields (wall time, seconds, dates)
and who wrote a study (host, pid). Kill points are drawn from a seeded generator over the command's
own uninterrupted wall time, so a failure names a reproducible moment.

Live workers, whose result depends on which worker asked when, are held to their own guarantee:
exactly the budget of complete trials, each whole, and only the trials in flight at the kill retried
(the ask -> first-heartbeat window is ``test_live.test_trial_asked_but_never_beaten_goes_stale``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from apqopt.studies import open_storage

pytestmark = pytest.mark.slow

TIMING = {"wall_s", "eval_s", "seconds", "wall_s_mean", "seconds_total", "median_s_per_record", "slowest_shard_s"}
KILLS = 3  # kill points per command and storage
TALLY: Counter[str] = Counter()  # kill points tried per command (printed at the end of the session)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "apqopt.cli", *args]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, time.perf_counter() - t0, p.stderr


def kill_at(cmd: list[str], cwd: Path, env: dict[str, str], after_s: float) -> bool:
    """Start ``cmd`` and SIGKILL it after ``after_s`` seconds; whether it was still running then."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def scrub(obj: Any) -> Any:
    """``obj`` without timing fields and writer identity (host, pid)."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if k not in TIMING and k not in ("host", "pid")}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    return obj


def storage_snapshot(url: str) -> dict[str, Any]:
    """Every study of a storage: attrs, system attrs and trials (params, values, states, attrs), scrubbed."""
    store = open_storage(url, create=False)
    out: dict[str, Any] = {}
    for s in store.get_all_studies():
        trials = store.get_all_trials(s._study_id, deepcopy=False)
        out[s.study_name] = scrub(
            {
                "attrs": s.user_attrs,
                "system": s.system_attrs,
                "directions": [d.name for d in s.directions],
                "trials": [
                    {
                        "number": t.number,
                        "state": t.state.name,
                        "values": t.values,
                        "params": t.params,
                        "attrs": t.user_attrs,
                        "system": t.system_attrs,
                    }
                    for t in trials
                ],
            }
        )
    return out


def fault_check(
    tmp_path: Path,
    name: str,
    args: list[str],
    state: Callable[[Path], Any],
    seed: int,
    kills: int = KILLS,
) -> None:
    """Run ``args`` once uninterrupted (reference) in one folder; then, per kill point, in a fresh folder:
    kill it at that moment, run it again, and compare ``state(folder)`` with the reference's."""
    env = {**os.environ, "APQOPT_HOME": "studies", "OMP_NUM_THREADS": "1"}
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    rc, wall, err = timed(cli(*args), ref_dir, env)
    assert rc == 0, err
    want = state(ref_dir)
    rng = np.random.default_rng(seed)
    for k, at in enumerate(np.sort(rng.uniform(0.2, wall, kills))):
        d = tmp_path / f"kill{k}"
        d.mkdir()
        killed = kill_at(cli(*args), d, env, float(at))
        rc, _, err = timed(cli(*args), d, env)
        assert rc == 0 or (rc == 2 and "already exists" in err), (at, err)
        got = state(d)
        assert got == want, f"{name}: killed at {at:.2f} s of {wall:.2f} s (was running: {killed})"
        TALLY[name] += 1


SEARCH = ["search", "--searcher", "evolution", "--budget", "60", "--latency", "0.6", "--study", "s", "--quiet"]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_search_killed_then_rerun(kind: str, tmp_path: Path) -> None:
    storage = "sqlite:///st.db" if kind == "sqlite" else "st.log"

    def state(d: Path) -> Any:
        return storage_snapshot(f"sqlite:///{d / 'st.db'}" if kind == "sqlite" else str(d / "st.log"))

    fault_check(tmp_path, f"search ({kind})", [*SEARCH, "--storage", storage], state, seed=1)


def test_search_killed_then_rerun_postgres(tmp_path: Path, postgres_url: str) -> None:
    """The same on PostgreSQL: one database per run (reference and each kill point)."""
    from tests.servers import create_database

    env = {**os.environ, "APQOPT_HOME": "studies", "OMP_NUM_THREADS": "1"}
    ref = create_database(postgres_url, "fault_ref")
    rc, wall, err = timed(cli(*SEARCH, "--storage", ref), tmp_path, env)
    assert rc == 0, err
    want = storage_snapshot(ref)
    rng = np.random.default_rng(2)
    for k, at in enumerate(np.sort(rng.uniform(0.2, wall, 2))):
        url = create_database(postgres_url, f"fault_{k}")
        kill_at(cli(*SEARCH, "--storage", url), tmp_path, env, float(at))
        rc, _, err = timed(cli(*SEARCH, "--storage", url), tmp_path, env)
        assert rc == 0 or (rc == 2 and "already exists" in err), (at, err)
        assert storage_snapshot(url) == want, f"killed at {at:.2f} s of {wall:.2f} s"
        TALLY["search (postgres)"] += 1


def report_state(folder: str, db: str = "st.db", studies: int = 0) -> Callable[[Path], Any]:
    """The storage ``db`` (relative to the run's folder) and the reports under ``folder``; with
    ``studies``, the storage must hold that many (an empty storage is no state to resume to)."""

    def state(d: Path) -> Any:
        reports = sorted((d / folder).rglob("compare.json")) if (d / folder).exists() else []
        snapshot = storage_snapshot(f"sqlite:///{d / db}")
        assert len(snapshot) >= studies, f"{d / db} holds {len(snapshot)} studies, expected {studies}"
        return {"storage": snapshot, "reports": [scrub(json.loads(p.read_text())) for p in reports]}

    return state


def test_compare_killed_then_rerun_resumes(tmp_path: Path) -> None:
    args = ["compare", "--searchers", "random", "evolution", "--seeds", "0", "1", "--budget", "40"]
    args += ["--latency", "0.6", "--storage", "sqlite:///st.db", "--out", "cmp", "--quiet"]
    fault_check(tmp_path, "compare (sqlite)", args, report_state("cmp"), seed=3, kills=2)


def test_run_killed_then_rerun_resumes(tmp_path: Path) -> None:
    args = ["run", "--samples", "500", "--budget", "40", "--searchers", "random", "evolution", "--seeds", "0"]
    args += ["--verify", "0", "--out", "reports", "--quiet"]  # the default storage: $APQOPT_HOME/apqopt.db
    fault_check(tmp_path, "run (sqlite)", args, report_state("reports", "studies/apqopt.db", 2), seed=4, kills=2)


@pytest.mark.usefixtures("fmnist_available")
def test_collect_killed_then_rerun(tmp_path: Path) -> None:
    def state(d: Path) -> Any:
        lines = (d / "fp.jsonl").read_text().splitlines()
        return [scrub(json.loads(line)) for line in lines]

    args = ["collect", "fp", "--n", "3", "--eval-images", "200", "--out", "fp.jsonl", "--quiet"]
    fault_check(tmp_path, "collect", args, state, seed=5)


def test_lut_build_killed_then_rerun(tmp_path: Path) -> None:
    def state(d: Path) -> Any:
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}  # the table, nothing beside

    fault_check(tmp_path, "lut build", ["lut", "build", "--out", "t.csv", "--workers", "1", "--quiet"], state, seed=6)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_live_search_killed_then_rerun(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A live search killed at random moments (several times), then the same command: the budget of
    complete trials, each whole, nothing running or waiting, no trial number twice."""
    from tests.servers import create_database

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'live.db'}"
    else:
        url = create_database(str(request.getfixturevalue("postgres_url")), "fault_live")
    args = ["search", "--live", "--searcher", "optuna-random", "--budget", "40", "--latency", "0.6"]
    args += ["--study", "live", "--storage", url, "--quiet"]
    env = {**os.environ, "APQOPT_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(7)
    for at in rng.uniform(1.0, 6.0, 2):
        kill_at(cli(*args), tmp_path, env, float(at))
        TALLY[f"live search ({kind})"] += 1
    rc, _, err = timed(cli(*args), tmp_path, env)
    assert rc == 0, err
    study = optuna.load_study(study_name="live", storage=url)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    assert states["COMPLETE"] == 40 and not states["RUNNING"] and not states["WAITING"]
    assert len({t.number for t in trials}) == len(trials)
    for t in trials:
        if t.state.name == "COMPLETE":
            assert len(t.values) == 2 and {"latency_ms", "predicted_accuracy"} <= set(t.user_attrs)


def test_tally_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how many kill points the suite tried (the README quotes the figure)."""
    with capsys.disabled():
        print(f"\nfault injection: {sum(TALLY.values())} kill points: {dict(TALLY)}")
