"""Recording every search run as an Optuna study, whatever the searcher.

Why: storage is decoupled from search (as in Optuna). A finished run becomes a study in any
Optuna storage -- the embedded SQLite file under ``APQOPT_HOME`` by default, a journal file, or any
SQLAlchemy URL (PostgreSQL when several machines share work) -- so optuna-dashboard and apqopt's own
dashboard read every searcher's results the same way. What a trial and a study hold is decided by
:mod:`apqopt.record` (one codec for every writer).

What a study holds:

* runs of at most ``full_limit`` evaluations (default 5,000): one trial per evaluated candidate
  (written in batches: :func:`add_trials`);
* larger runs (APQ's 50,000-candidate evolution): the feasible non-dominated candidates as trials,
  plus the full history, compressed, *inside the study* (system attrs ``apqopt:history:*``), so any
  machine that reaches the storage reads it -- never a file beside a database that a worker on another
  machine cannot see.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from tqdm import tqdm

from apqopt.errors import ApqoptError
from apqopt.optuna_adapter import insert_trials, storage_of, study_id
from apqopt.record import (
    RecordCodec,
    StudyRecord,
    StudyState,
    Verified,
    history_parts,
    mark_recorded,
    mark_recording,
    quiet_optuna,
    read_evaluation,
    run_extras,
    stored_record,
    study_record,
    write_attrs,
    write_history,
)
from apqopt.search.base import SearchResult
from apqopt.search.pareto import non_dominated
from apqopt.search.problem import OUTSIDE_MARGIN, Evaluation, Problem
from apqopt.settings import parse_storage

# Largest run recorded trial by trial, per storage kind: a 125-param trial costs ~1-2 ms to write in
# batches into SQLite or a journal file (benchmarks/bench_storage.py); beyond, the front + the history.
FULL_LIMIT = {"rdb": 5000, "journal": 5000}
# seconds a SQLite reader or writer waits for another process's lock: sqlite3's default 5 s is what
# one slow commit on a loaded disk takes, and then a dashboard or a worker fails with "database is locked"
SQLITE_BUSY_S = 120
HISTORY_CHUNK = 512 * 1024  # characters of base64 per system attr (TEXT columns of SQLite and PostgreSQL)
_HISTORY_FIELDS = ("genes", "accuracy", "latency", "energy", "violation")


class StorageError(ApqoptError, ValueError):
    """A storage URL that cannot be opened, or a study that clashes with an existing one."""


# How a recorded study proves it is whole: its ``recording`` mark (who writes it, with which settings) is
# set right after the study is created, ``recorded`` after its last trial and attr. A study with the first
# and not the second was interrupted: readers flag it (:meth:`StudyRecord.state`), the same command replaces it.


def settings_digest(settings: dict[str, Any]) -> str:
    """A short fingerprint of what decides a run's result (space, problem, searcher and its parameters,
    seed, budget, ...): the same command gives the same digest, so its study can be resumed or reused."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_settings(problem: Problem, searcher: str, params: dict[str, Any], budget: int, **extra: Any) -> dict[str, Any]:
    """Everything that decides a recorded run's trials (what :func:`settings_digest` fingerprints)."""
    return {
        "space": problem.space.name,
        "objectives": list(problem.objectives),
        "constraints": dict(problem.constraints),
        "fixed": None if problem.fixed is None else np.asarray(problem.fixed).tolist(),
        **({"pessimism": problem.pessimism} if problem.pessimism else {}),  # absent at 0: older digests hold
        "lut": f"{problem.lut.hardware}: {problem.lut.command}: {len(problem.lut)}",
        "searcher": searcher,
        "params": params,
        "budget": budget,
        **extra,
    }


def _writer_alive(writer: dict[str, Any]) -> bool:
    """Whether the process that began writing a study may still run: on this host, whether its pid
    lives; on another host it cannot be told, so it is assumed to (``--overwrite`` decides)."""
    if not writer:
        return False
    if writer.get("host") != socket.gethostname():
        return True
    pid = int(writer.get("pid", 0))
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def existing_study(store: optuna.storages.BaseStorage, name: str) -> tuple[StudyState, StudyRecord] | None:
    """(state, record) of the study called ``name``, or None."""
    try:
        sid = store.get_study_id_from_name(name)
    except KeyError:
        return None
    rec = stored_record(store, sid)
    n_trials = 0 if rec.attrs else store.get_n_trials(sid)  # only an attr-less study needs it (RDB reads every trial)
    return rec.state(n_trials, [d.name for d in store.get_study_directions(sid)]), rec


def check_study_name(
    store: optuna.storages.BaseStorage, name: str, digest: str, overwrite: bool = False, where: str = ""
) -> Literal["new", "replace", "reuse"]:
    """What recording a run as ``name`` will do, decided (and refused) before any search work:
    ``new``; ``replace`` an interrupted study of the same run (or any study, with ``overwrite``);
    ``reuse`` a complete study of exactly this run. Anything else is an error saying what to do."""
    found = existing_study(store, name)
    if found is None:
        return "new"
    state, rec = found
    where = where or "the storage"
    writer = rec.writer
    if state == "incomplete" and _writer_alive(writer):
        here = writer.get("host") == socket.gethostname()
        if not (overwrite and not here):
            raise StorageError(
                f"study '{name}' in {where} is being written by process {writer.get('pid')} on {writer.get('host')}"
                + ("" if here else "; if that process is gone, --overwrite replaces the study")
            )
    if overwrite:
        return "replace"
    stored = rec.settings  # the newest writer's
    if state == "incomplete" and stored in (None, digest):
        return "replace"
    if state == "complete" and stored == digest:
        return "reuse"
    what = {"complete": "already exists", "incomplete": "was interrupted", "live": "is a live study"}.get(
        state, "exists and is not an apqopt study"
    )
    other = " with other settings" if stored not in (None, digest) else ""
    raise StorageError(f"study '{name}' {what}{other} in {where}; choose another name, or --overwrite to replace it")


def open_storage(url: str | None = None, create: bool = True, **rdb_kw: Any) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///path``, ``postgresql://...``, or a ``.log`` journal path
    (default: :func:`apqopt.settings.default_storage`). ``rdb_kw`` go to ``RDBStorage`` (heartbeats).
    ``create=False`` (readers): a SQLite or journal file that does not exist is an error, not created."""
    try:
        target = parse_storage(url)
    except ApqoptError as exc:
        raise StorageError(str(exc)) from None
    if target.path is not None:
        if target.path.is_dir():
            raise StorageError(f"storage {url!r}: {target.path} is a folder, not a database file")
        if not create and not target.path.exists():
            raise StorageError(f"no storage at {target.path} (nothing has been recorded there)")
        folder = target.path.parent  # Path("st.db").parent is the working folder itself
        if create and not folder.exists() and not _is_own_folder(folder):
            # a typo in a path must not leave folders behind: apqopt creates only its own home
            raise StorageError(f"storage {url!r}: folder {folder} does not exist (create it first)")
        if create and (
            (target.path.exists() and not os.access(target.path, os.W_OK))
            or (folder.exists() and not os.access(folder, os.W_OK))
        ):  # found now, not after a search whose results could then not be stored
            raise StorageError(f"storage {url!r}: {target.path} (or its folder) is not writable")
    try:
        if target.kind == "journal":
            assert target.path is not None
            target.path.parent.mkdir(parents=True, exist_ok=True)
            if create and target.path.exists():
                _check_journal(target.path)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(target.path)))
        if target.kind == "sqlite":
            assert target.path is not None
            target.path.parent.mkdir(parents=True, exist_ok=True)
            # concurrent writers on one file wait for each other instead of failing with "database is locked"
            rdb_kw.setdefault("engine_kwargs", {"connect_args": {"timeout": SQLITE_BUSY_S}})
        return rdb_storage(target.url, **rdb_kw)
    except StorageError:
        raise
    except ImportError as exc:  # e.g. psycopg2 for postgresql:// URLs (Optuna: "Failed to import DB access module")
        raise StorageError(driver_missing(url)) from exc
    except Exception as exc:  # SQLAlchemy raises many kinds for bad URLs / unreachable servers
        raise StorageError(f"cannot open storage {url!r}: {type(exc).__name__}: {exc}") from exc


def _is_own_folder(folder: Path) -> bool:
    """Whether ``folder`` is apqopt's home (``$APQOPT_HOME`` or ./studies) or inside it: the default storage's
    place, which apqopt creates when first used."""
    from apqopt.settings import home

    own = home().resolve()
    target = folder.resolve()
    return target == own or own in target.parents


def driver_missing(url: str) -> str:
    """The one line for a storage URL whose database driver is not installed, naming the extra."""
    fix = "pip install 'apqopt[postgres]'" if url.startswith("postgresql") else "install its SQLAlchemy driver"
    return f"cannot open storage {url!r}: its database driver is not installed; {fix}"


def _check_journal(path: Path) -> None:
    """Before writing to a journal: a complete line that is not a record is damage, named (nothing is
    written after it); a torn last line -- a writer killed mid-append, never a committed record -- is
    cut, under Optuna's own journal lock, so the next record does not fuse with it."""
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    while not lock.acquire():
        pass
    try:
        raw = path.read_bytes()
        body, _, torn = raw.rpartition(b"\n")
        for no, line in enumerate(body.split(b"\n") if body else [], 1):
            try:
                ok = isinstance(json.loads(line), dict)
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
            if not ok:
                raise StorageError(f"{path}:{no}: not a journal record (damaged journal); nothing was written to it")
        if torn:
            with path.open("r+b") as fh:
                fh.truncate(len(raw) - len(torn))
    finally:
        lock.release()


def rdb_storage(url: str, tries: int = 5, **kw: Any) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried: processes that start together on a fresh database race to create
    Optuna's tables, and the losers fail (a unique violation, or SQLite's "table already exists") in a
    way a second attempt does not meet."""
    import time

    import sqlalchemy.exc

    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, **kw)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError):
            # another process created the tables first ("already exists", unique violation) or holds the lock
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def front_rows(ev: Evaluation, objectives: tuple[str, ...] = ("latency",)) -> np.ndarray:
    """Indices of the feasible candidates not dominated in (-accuracy, costs...)."""
    idx = np.flatnonzero(ev.feasible)
    F = np.column_stack([-ev.accuracy[idx], *(ev.cost(o)[idx] for o in objectives)])
    return idx[non_dominated(F)] if len(idx) else idx


def record(
    result: SearchResult,
    problem: Problem,
    storage: str | None = None,
    study_name: str | None = None,
    attrs: dict[str, Any] | None = None,
    full_limit: int | None = None,
    predictor: str = "",
    verified_rows: dict[int, Verified] | None = None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> optuna.Study:
    """Write a finished run as a new study, as one unit: the study is marked ``recording`` first and
    ``recorded`` last, so a kill in between leaves a study every reader flags as interrupted and the
    same run (same ``settings``) replaces. An existing whole study is never replaced unless ``overwrite``.

    ``verified_rows``: measurements of evaluated rows (row index -> measured accuracy, stderr, ...),
    stored in the study attr ``verified`` under the trial numbers those rows get. ``settings``: what
    decides the run (default: :func:`run_settings` of the result)."""
    store = open_storage(storage)
    codec = RecordCodec.of(problem)
    name = study_name or f"{result.searcher}-{problem.space.name}-seed{result.seed}"
    settings = settings or run_settings(problem, result.searcher, result.params, result.budget, predictor=predictor)
    digest = settings_digest(settings)
    action = check_study_name(store, name, digest, overwrite, storage or "the default storage")
    if action == "reuse":
        raise StorageError(f"study '{name}' already exists (the same run); choose another name, or --overwrite")
    if action == "replace":
        optuna.delete_study(study_name=name, storage=store)
    try:
        study = codec.create_study(store, name)
    except optuna.exceptions.DuplicatedStudyError:  # another process created it meanwhile
        raise StorageError(f"study '{name}' was just created by another process; choose another name") from None
    mark_recording(study, _writer(digest))
    ev = result.evaluated
    full = len(ev) <= (_full_limit(store) if full_limit is None else full_limit)
    rows = np.arange(len(ev)) if full else front_rows(ev, problem.objectives)
    number = {int(r): n for n, r in enumerate(rows)}
    extras = run_extras(
        outside=_outside(problem, ev.genes[rows]),
        verified={number[i]: v for i, v in (verified_rows or {}).items() if i in number},
        history=None if full else f"in the study (its system attrs), {len(ev)} rows",
    )
    if not full:
        _store_history(store, study, ev)
    write_attrs(study, _run_attrs(codec, result, problem, predictor, full, {**(attrs or {}), **extras}))
    dists = codec.distributions()
    add_trials(store, study, [codec.frozen_trial(ev, int(i), dists) for i in rows], progress=progress)
    mark_recorded(study, len(rows), digest)  # last: the study is whole
    return study


def _writer(digest: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "settings": digest}


def _full_limit(store: optuna.storages.BaseStorage) -> int:
    return FULL_LIMIT["journal" if isinstance(store, optuna.storages.JournalStorage) else "rdb"]


def _run_attrs(
    codec: RecordCodec,
    result: SearchResult,
    problem: Problem,
    predictor: str,
    full: bool,
    attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The user attrs of a recorded run: the study's common attrs and what this run spent."""
    ev = result.evaluated
    return codec.study_attrs(
        result.searcher,
        result.seed,
        result.budget,
        lut=f"{problem.lut.hardware}: {problem.lut.command}",
        predictor=predictor,
        trials_hold="every evaluated candidate" if full else "feasible non-dominated candidates",
        params=result.params,
        evaluated=len(ev),
        requested=int(result.notes.get("requested", len(ev))),
        stopped_early=bool(result.notes.get("stopped_early", False)),
        wall_s=round(result.wall_s, 3),
        eval_s=round(result.eval_s, 3),
        **({} if problem.spec is None else {"problem": problem.spec.to_dict()}),
        **(attrs or {}),
    )


def _outside(problem: Problem, genes: np.ndarray) -> dict[str, Any]:
    """The trial numbers (rows of ``genes``, in order) whose prediction is an extrapolation beyond the
    predictor's training data (:meth:`Problem.outside_data`), and the margin that decided it."""
    return {"margin": OUTSIDE_MARGIN, "trials": np.flatnonzero(problem.outside_data(genes)).tolist()}


def continue_plan(
    store: optuna.storages.BaseStorage, name: str, settings: dict[str, Any], where: str = ""
) -> Literal["new", "replace", "extend"]:
    """What ``search --continue`` does with ``name``: record it ``new`` (no study yet), ``replace`` an
    interrupted recording of this very run, or ``extend`` a whole study of the same settings recorded
    with a smaller budget. Anything else (other settings, a budget not larger, a live or foreign study)
    is refused here, before any search work."""
    where = where or "the storage"
    digest = settings_digest(settings)
    found = existing_study(store, name)
    if found is None:
        return "new"
    state, rec = found
    if state == "incomplete":
        return check_study_name(store, name, digest, False, where)  # "replace" or a refusal
    if state != "complete":
        raise StorageError(f"study '{name}' in {where} is not a recorded apqopt run; --continue extends only those")
    old = rec.budget
    stored = rec.recorded_settings
    if not isinstance(old, int) or settings_digest({**settings, "budget": old}) != stored:
        raise StorageError(
            f"study '{name}' in {where} was recorded with other settings; --continue needs the command that "
            "recorded it with a larger --budget"
        )
    if old >= settings["budget"]:
        raise StorageError(f"study '{name}' already has --budget {old}; --continue needs a larger --budget")
    return "extend"


def extend(
    result: SearchResult,
    problem: Problem,
    storage: str | None,
    study_name: str,
    settings: dict[str, Any],
    predictor: str = "",
    progress: bool = False,
) -> tuple[optuna.Study, int]:
    """Continue a whole recorded run (:func:`continue_plan` said ``extend``) with ``result``: the same
    searcher and seed run again with a larger budget. Every searcher walks the same path whatever its
    budget, so the study's networks are the first ones of ``result`` (checked: a study that is not, e.g.
    recorded by another apqopt version, is refused and left as it was); the study keeps its trials and
    gains the rest, and ends as a single run with the larger budget would have recorded it.

    A kill while the new trials are written leaves the study marked interrupted (its ``recording``
    names the new settings, its ``recorded`` the old), and the same command records it afresh. A study
    that holds only its front (larger than :data:`FULL_LIMIT`) is recorded afresh under the same name.
    Returns the study and how many networks it held before."""
    store = open_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=store)
    before = load_history(study)
    ev = result.evaluated
    n_old = len(before)
    space = problem.space
    same = (
        len(ev) >= n_old
        and np.array_equal(space.canonical(before.genes), space.canonical(ev.genes[:n_old]))
        and np.allclose(before.accuracy, ev.accuracy[:n_old], rtol=1e-6, atol=1e-9)
    )
    if not same:
        raise StorageError(
            f"study '{study_name}': its networks are not the first ones of this run (recorded by another "
            "apqopt version?); it is left as it was; --overwrite to record the run afresh"
        )
    digest = settings_digest(settings)
    rec = study_record(study)
    full = len(ev) <= _full_limit(store) and rec.holds_every_candidate
    if not full:
        return record(
            result,
            problem,
            storage,
            study_name,
            predictor=predictor,
            settings=settings,
            overwrite=True,
            progress=progress,
        ), n_old
    codec = RecordCodec.of(problem)
    mark_recording(study, _writer(digest))
    continued = [*rec.continued, {"from_budget": rec.budget, "trials": n_old}]
    extras = run_extras(outside=_outside(problem, ev.genes), continued=continued)
    write_attrs(study, _run_attrs(codec, result, problem, predictor, True, extras))
    dists = codec.distributions()
    add_trials(store, study, [codec.frozen_trial(ev, i, dists) for i in range(n_old, len(ev))], progress=progress)
    mark_recorded(study, len(ev), digest)  # last: whole again
    return study, n_old


def add_trials(
    store: optuna.storages.BaseStorage,
    study: optuna.Study,
    trials: list[optuna.trial.FrozenTrial],
    chunk: int = 500,
    progress: bool = False,
) -> None:
    """Add finished trials to a study. On an RDB storage, in transactions of ``chunk`` trials through
    Optuna's own table models (``study.add_trials`` checks every param of every trial against the study
    in its own queries and commits trial by trial: ~55 ms per 130-param trial into SQLite, against ~1 ms
    here; ``tests/test_studies.py`` checks both give the same study). Other storages: ``add_trials``."""
    bar = tqdm(total=len(trials), desc="recording", unit="trial", disable=not progress or len(trials) < 2 * chunk)
    for k in range(0, len(trials), chunk):
        part = trials[k : k + chunk]
        if isinstance(store, optuna.storages.RDBStorage):
            insert_trials(store, study_id(study), part)
        else:
            with quiet_optuna():
                study.add_trials(part)
        bar.update(len(part))
    bar.close()


def _store_history(store: optuna.storages.BaseStorage, study: optuna.Study, ev: Evaluation) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{f: getattr(ev, f) for f in _HISTORY_FIELDS})
    text = base64.b64encode(buf.getvalue()).decode("ascii")
    chunks = [text[i : i + HISTORY_CHUNK] for i in range(0, len(text), HISTORY_CHUNK)]
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    header = {"chunks": len(chunks), "rows": len(ev), "sha256": digest}
    write_history(store, store.get_study_id_from_name(study.study_name), chunks, header)


def load_history(study: optuna.Study) -> Evaluation:
    """Every evaluated candidate of a recorded run (from the history kept in the study, or its trials)."""
    head, parts = history_parts(storage_of(study), study_id(study))
    if head is not None:
        if any(p is None for p in parts):
            raise StorageError(f"study '{study.study_name}': its stored history is incomplete")
        text = "".join(parts)
        if hashlib.sha256(text.encode("ascii")).hexdigest() != head["sha256"]:
            raise StorageError(f"study '{study.study_name}': its stored history does not match its checksum")
        with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as d:
            return Evaluation(*(d[f] for f in _HISTORY_FIELDS))
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    rec = study_record(study)
    return read_evaluation(trials, None if rec.space_name is None else rec.codec())
