"""Recording every search run as an Optuna study, whatever the searcher.

Why: storage is decoupled from search (as in Optuna). A finished run becomes a study in any
Optuna storage -- the embedded file under ``studies/`` by default, a journal file, or any SQLAlchemy
URL (PostgreSQL when several machines share work) -- so optuna-dashboard and apqopt's own dashboard
read every searcher's results the same way.

What a study holds:

* runs of at most ``full_limit`` evaluations (default: 5,000 on a journal file, 250 on SQL storages,
  whose per-trial writes are ~50x slower): one trial per evaluated candidate,
  params = the candidate's choices (gene values), values = [accuracy, costs...], user attrs =
  latency, energy, predicted accuracy, feasibility; constraints in both Optuna forms;
* larger runs (APQ's 50,000-candidate evolution): the feasible non-dominated candidates as trials,
  plus the full history in a compressed ``.npz`` side file that the study attr ``history_file``
  names (writing 50k trials would cost minutes to hours, dwarfing the search itself).

Study attrs: searcher, seed, params, space, LUT, predictor, objectives, constraints, budget, wall time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from apqopt.search.base import SearchResult
from apqopt.search.problem import Evaluation, Problem

DEFAULT_STORAGE = "sqlite:///studies/apqopt.db"
# Largest run recorded trial-by-trial, per storage kind. A trial with ~130 params costs about
# 0.1-0.2 s to write into SQLite (one transaction per param/attr) but milliseconds into a journal
# file (benchmarks/bench_storage.py), so SQLite/PostgreSQL studies hold the front + a side file sooner.
FULL_LIMIT = {"rdb": 250, "journal": 5000}


class StorageError(ValueError):
    """A storage URL that cannot be opened, or a study that clashes with an existing one."""


def open_storage(url: str | None = None, **rdb_kw: Any) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///path``, ``postgresql://...``, or a ``.log`` journal path.
    ``rdb_kw`` go to ``RDBStorage`` (heartbeats of live studies)."""
    url = url or DEFAULT_STORAGE
    try:
        if url.endswith((".log", ".journal")) and "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return rdb_storage(url, **rdb_kw)
    except ModuleNotFoundError as exc:  # e.g. psycopg2 for postgresql:// URLs
        raise StorageError(f"cannot open storage {url!r}: {exc}; pip install 'apqopt[postgres]'") from exc
    except Exception as exc:  # SQLAlchemy raises many kinds for bad URLs / unreachable servers
        raise StorageError(f"cannot open storage {url!r}: {type(exc).__name__}: {exc}") from exc


def rdb_storage(url: str, tries: int = 5, **kw: Any) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried: processes that start together on a fresh database race to create
    Optuna's tables, and the losers fail with a unique violation that a second attempt does not meet."""
    import time

    import sqlalchemy.exc

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, **kw)
        except (sqlalchemy.exc.IntegrityError, optuna.exceptions.StorageInternalError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def non_dominated(ev: Evaluation, objectives: tuple[str, ...]) -> np.ndarray:
    """Indices of feasible candidates not dominated in (-accuracy, costs)."""
    idx = np.flatnonzero(ev.feasible)
    if not len(idx):
        return idx
    F = np.column_stack([-ev.accuracy[idx], *(ev.cost(o)[idx] for o in objectives)])
    if F.shape[1] == 2:  # one cost: sort by cost, keep each strict improvement in accuracy (O(n log n))
        order = np.lexsort((F[:, 0], F[:, 1]))
        best = np.minimum.accumulate(F[order, 0])
        new = np.r_[True, F[order[1:], 0] < best[:-1]]
        return np.sort(idx[order[new]])
    order = np.lexsort(F.T[::-1])
    keep: list[int] = []
    for i in order:
        if not any(np.all(F[k] <= F[i]) and np.any(F[k] < F[i]) for k in keep):
            keep.append(i)
    return idx[np.array(keep, dtype=np.int64)]


def _trial(
    problem: Problem, ev: Evaluation, i: int, dists: dict[str, CategoricalDistribution]
) -> optuna.trial.FrozenTrial:
    sp = problem.space
    params = {name: sp.gene_values(g)[int(ev.genes[i, g])] for g, name in enumerate(sp.gene_names())}
    g = problem.constraint_matrix(ev)[i]
    system = {f"constraints:{n}": float(v) for n, v in zip(problem.constraints, g)}
    if len(g):
        system["constraints"] = [float(v) for v in g]
    return optuna.trial.create_trial(
        params=params,
        distributions=dists,
        values=[float(ev.accuracy[i]), *(float(ev.cost(o)[i]) for o in problem.objectives)],
        user_attrs={
            "latency_ms": float(ev.latency[i]),
            "energy_mJ": float(ev.energy[i]),
            "predicted_accuracy": float(ev.accuracy[i]),
            "feasible": bool(ev.feasible[i]),
            "order": i,
        },
        system_attrs=system,
    )


def record(
    result: SearchResult,
    problem: Problem,
    storage: str | None = None,
    study_name: str | None = None,
    attrs: dict[str, Any] | None = None,
    full_limit: int | None = None,
) -> optuna.Study:
    """Write a finished run as a new study; refuses to overwrite an existing study of that name."""
    store = open_storage(storage)
    name = study_name or f"{result.searcher}-{problem.space.name}-seed{result.seed}"
    try:
        study = optuna.create_study(
            study_name=name, storage=store, directions=["maximize", *["minimize"] * len(problem.objectives)]
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise StorageError(
            f"study '{name}' already exists in {storage or DEFAULT_STORAGE}; choose another name"
        ) from None
    sp = problem.space
    dists = {name: CategoricalDistribution(list(sp.gene_values(g))) for g, name in enumerate(sp.gene_names())}
    ev = result.evaluated
    if full_limit is None:
        full_limit = FULL_LIMIT["journal" if isinstance(store, optuna.storages.JournalStorage) else "rdb"]
    meta: dict[str, Any] = {
        "searcher": result.searcher,
        "seed": result.seed,
        "params": _jsonable(result.params),
        "space": sp.name,
        "lut": f"{problem.lut.hardware}: {problem.lut.command}",
        "objectives": list(problem.objectives),
        "constraints": problem.constraints,
        "budget": problem.budget,
        "evaluated": len(ev),
        "wall_s": round(result.wall_s, 3),
        "eval_s": round(result.eval_s, 3),
        **(attrs or {}),
    }
    if len(ev) <= full_limit:
        rows = np.arange(len(ev))
        meta["trials_hold"] = "every evaluated candidate"
    else:
        rows = non_dominated(ev, problem.objectives)
        side = _history_path(storage, name)
        np.savez_compressed(
            side, genes=ev.genes, accuracy=ev.accuracy, latency=ev.latency, energy=ev.energy, violation=ev.violation
        )
        meta["trials_hold"] = "feasible non-dominated candidates"
        meta["history_file"] = str(side)
    for key, value in meta.items():
        study.set_user_attr(key, value)
    study.add_trials([_trial(problem, ev, int(i), dists) for i in rows])
    return study


def _history_path(storage: str | None, name: str) -> Path:
    url = storage or DEFAULT_STORAGE
    base = Path(url[len("sqlite:///") :]).parent if url.startswith("sqlite:///") else Path("studies")
    if "://" not in url:
        base = Path(url).parent
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{name}.history.npz"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def load_history(study: optuna.Study) -> Evaluation:
    """Every evaluated candidate of a recorded run (from its trials or its side file)."""
    path = study.user_attrs.get("history_file")
    if path:
        if not os.path.exists(path):
            raise StorageError(f"study '{study.study_name}' points to a missing history file {path}")
        d = np.load(path)
        return Evaluation(d["genes"], d["accuracy"], d["latency"], d["energy"], d["violation"])
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    trials.sort(key=lambda t: t.user_attrs.get("order", t.number))
    acc = np.array([t.user_attrs["predicted_accuracy"] for t in trials])
    lat = np.array([t.user_attrs["latency_ms"] for t in trials])
    en = np.array([t.user_attrs["energy_mJ"] for t in trials])
    viol = np.array(
        [sum(max(0.0, v) for k, v in t.system_attrs.items() if k.startswith("constraints:")) for t in trials]
    )
    return Evaluation(np.zeros((len(trials), 0), dtype=np.int64), acc, lat, en, viol)
