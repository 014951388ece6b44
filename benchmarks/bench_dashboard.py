"""Dashboard speed on big studies: first render and page switches for a 50,000-trial study, beside a
5,000-trial one (same code path), driven by Streamlit's AppTest (the app's script, no browser).

The studies are real runs (APQ's evolution on the fmnist space, a fixed linear stand-in predictor):
the first 10 trials are written by `apqopt.studies.record`, the rest bulk-inserted into the same
Optuna schema with one SQL transaction (writing 50,000 trials of 125 params through Optuna's API
would take hours on SQLite here; see bench_storage.py), so the dashboard reads exactly what a
recorded study holds.

Run: python benchmarks/bench_dashboard.py
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write
from streamlit.testing.v1 import AppTest

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.review import StudyReader
from apqopt.search import make_searcher
from apqopt.search.problem import Evaluation, Problem
from apqopt.studies import record

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
SIZES = (5_000, 50_000)
SEQUENCE = ["Studies", "Compare searchers", "Candidate inspector", "Predictor", "LUT explorer", "Studies"]


def make_study(db: Path, n: int) -> None:
    sp = get_space("fmnist")
    w = np.random.default_rng(0).normal(size=sp.encoding_width)
    lut = load_shipped("fmnist")
    problem = Problem(sp, lambda g: 0.85 + 0.001 * sp.encode(g) @ w, lut, constraints={"latency": 0.6})
    res = make_searcher("evolution", seed=0).run(problem, n)
    ev = res.evaluated
    head = Evaluation(*(getattr(ev, f)[:10] for f in ("genes", "accuracy", "latency", "energy", "violation")))
    res.evaluated = head
    record(res, problem, f"sqlite:///{db}", f"evolution-{n}", full_limit=10)
    con = sqlite3.connect(db)
    (sid,) = con.execute("SELECT study_id FROM studies WHERE study_name = ?", (f"evolution-{n}",)).fetchone()
    dists = dict(con.execute("SELECT param_name, distribution_json FROM trial_params WHERE trial_id = 1"))
    names = sp.gene_names()
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000")
    trials, params, values, uattrs, sattrs = [], [], [], [], []
    for i in range(10, len(ev)):
        tid = i + 1
        trials.append((tid, i, sid, "COMPLETE", now, now))
        params += [(tid, name, float(ev.genes[i, g]), dists[name]) for g, name in enumerate(names)]
        values += [(tid, 0, float(ev.accuracy[i]), "FINITE"), (tid, 1, float(ev.latency[i]), "FINITE")]
        g = float(ev.latency[i] - 0.6)
        feas = bool(ev.feasible[i])
        for key, v in (
            ("latency_ms", ev.latency[i]),
            ("energy_mJ", ev.energy[i]),
            ("predicted_accuracy", ev.accuracy[i]),
            ("feasible", feas),
            ("order", i),
        ):
            uattrs.append((tid, key, json.dumps(v if isinstance(v, bool) else float(v))))
        sattrs += [(tid, "constraints:latency", json.dumps(g)), (tid, "constraints", json.dumps([g]))]
    with con:
        con.executemany("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?)", trials)
        con.executemany(
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?,?,?,?)", params
        )
        con.executemany("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?,?,?,?)", values)
        con.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?,?,?)", uattrs)
        con.executemany("INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (?,?,?)", sattrs)
        for key, v in (("evaluated", n), ("trials_hold", "every evaluated candidate")):
            con.execute(
                "UPDATE study_user_attributes SET value_json = ? WHERE study_id = ? AND key = ?",
                (json.dumps(v), sid, key),
            )
    con.close()


STEPS = [
    ("first render: Studies", "page", "Studies"),
    ("Studies: one study's trial table", "view", "Trials"),
    ("Studies: importance (fANOVA)", "view", "Importance"),
    *[(f"switch to {p}", "page", p) for p in SEQUENCE[1:]],
]


def drive(url: str) -> list[float]:
    """Seconds per step of STEPS (the first is the cold first render)."""
    import os

    os.environ["APQOPT_STORAGE"] = url
    at = AppTest.from_file(APP, default_timeout=600)
    out = []
    for i, (label, kind, value) in enumerate(STEPS):
        t0 = time.perf_counter()
        if i == 0:
            at.session_state["page"] = value
            at.run()
        elif kind == "view":
            at.session_state["study_view"] = value
            at.run()
        else:
            at.sidebar.radio(key="page").set_value(value).run()
        out.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"{label}: {at.exception[0].message}")
    return out


def poll_cost(url: str, n: int = 50) -> float:
    """Seconds per check of the sidebar's watcher (StudyReader.version), warm."""
    reader = StudyReader(url)
    reader.version()
    t0 = time.perf_counter()
    for _ in range(n):
        reader.version()
    return (time.perf_counter() - t0) / n


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    times, polls = {}, {}
    for n in SIZES:
        t0 = time.perf_counter()
        make_study(tmp / f"s{n}.db", n)
        print(f"built {n}-trial study in {time.perf_counter() - t0:.1f} s", flush=True)
        url = f"sqlite:///{tmp / f's{n}.db'}"
        times[n] = drive(url)
        polls[n] = poll_cost(url)
        print(n, [round(t, 2) for t in times[n]], f"poll {polls[n] * 1000:.1f} ms", flush=True)
    small, big = SIZES
    table = [["step", f"{small:,} trials (s)", f"{big:,} trials (s)", "ratio"]]
    for k, (label, _, _) in enumerate(STEPS):
        table.append(
            [label, f"{times[small][k]:.2f}", f"{times[big][k]:.2f}", f"{times[big][k] / times[small][k]:.1f}x"]
        )
    table.append(
        ["watcher's check (every 5 s)", f"{polls[small]:.4f}", f"{polls[big]:.4f}", f"{polls[big] / polls[small]:.1f}x"]
    )
    notes = (
        "SQLite storage, one study per run, 2 cores (torch not involved); the study's trials are read with plain "
        "SQL (apqopt.review) and cached under the storage's version, so the switch back to Studies hits the cache. "
        "The Studies page draws the first study's front over all its trials. The trial table reads the networks of "
        "at most 5,000 trials (the front plus an even sample); importance fits fANOVA on at most 300. "
        "Grey points: at most 5,000 drawn per kind. "
        "Candidate inspector reads one trial's params; the LUT explorer reads no study."
    )
    write(
        "dashboard",
        {"sizes": list(SIZES), "steps": [s[0] for s in STEPS], "seconds": times, "poll_seconds": polls},
        table,
        notes,
    )


if __name__ == "__main__":
    main()
