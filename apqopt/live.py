"""Live studies: one Optuna study in a shared database, worked on by many processes or machines.

Why: a recorded run (:mod:`apqopt.studies`) is written once at the end by one process. When one
machine is not enough -- many Optuna-sampler workers on one search, or supernet measurements that
take a minute each -- the study itself must be the work queue, and a killed worker must cost
nothing but its unfinished trial.

Two kinds of live study, both described by a :class:`LiveSpec` kept in the study (so a worker needs
only the storage URL and the study name):

* ``search``: workers ask an Optuna sampler (NSGA-II, TPE, random) for candidates and evaluate
  them with the predictor and the LUT, until the study holds ``budget`` complete trials;
* ``measure``: candidates are enqueued (:func:`enqueue`), workers take them and measure their
  accuracy on the supernet (full precision, or quantized after the fixed fine-tune).

How the count stays exact: a worker takes a *ticket* under a study lock (a PostgreSQL advisory
lock, or an ``flock`` on a file beside the SQLite database): it counts complete, running and waiting
trials and asks for a new trial only while that count is below the budget (asking pops a waiting
trial first). Only counting and trial creation are serialised; sampling, evaluation and telling run
in parallel.

How nothing is lost or half-written: every running trial carries a heartbeat (a thread beats while
it is evaluated). A trial whose worker died goes stale after the grace period; any worker then
fails it and re-enqueues its candidate (Optuna's ``RetryHeartbeatStaleTrialCallback``), so the
candidate is evaluated exactly once more. Values and the COMPLETE state are written by ``tell`` in
one transaction. Journal files carry no heartbeats, so live studies need SQLite or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from tqdm import tqdm

from apqopt.errors import ConfigError
from apqopt.optuna_adapter import heartbeat_missing, storage_of, study_id, trial_id
from apqopt.problem_spec import ProblemSpec
from apqopt.record import (
    SUPERNET,
    WORKERS,
    RecordCodec,
    enqueue_measure,
    queue_index,
    quiet_optuna,
    set_live_spec,
    set_system_value,
    study_record,
    system_value,
    write_attrs,
    write_error,
    write_measurement,
)
from apqopt.settings import allowed_dirs, default_storage, inside_allowed, parse_storage
from apqopt.studies import StorageError, open_storage


@contextlib.contextmanager
def _heartbeat_warnings_off() -> Iterator[None]:
    """Heartbeats with ask-and-tell are what a shared queue needs; Optuna warns about both uses.
    Silenced inside apqopt's own calls only (the user's warning filters stay as they are)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        warnings.filterwarnings(
            "ignore",
            message=".*(heartbeat|grace_period|fail_stale_trials|RetryHeartbeatStaleTrialCallback).*experimental",
        )
        yield


Kind = Literal["search", "measure"]


@dataclass(frozen=True)
class LiveSpec:
    """Everything a worker needs to take part in a live study (stored in the study as JSON).

    ``lut``/``predictor``/``supernet``: file paths as seen by every worker (empty: the space's
    shipped asset). ``budget``: complete trials wanted (``search``) or enqueued candidates (``measure``).
    """

    kind: Kind
    space: str = "fmnist"
    budget: int = 1000
    sampler: str = "nsga2"
    seed: int = 0
    population: int = 50
    objectives: tuple[str, ...] = ("latency",)
    constraints: dict[str, float] = field(default_factory=dict)
    lut: str = ""
    predictor: str = ""
    measure: str = "quant"
    supernet: str = ""
    eval_images: int = 5000
    allow_missing: bool = False
    heartbeat_s: int = 10
    grace_s: int = 30
    space_def: dict[str, Any] = field(default_factory=dict)  # a non-preset space's description, for workers
    pessimism: float = 0.0  # kept out of the stored spec at 0, so studies made before it existed still join

    def __post_init__(self) -> None:
        from apqopt.search.optuna_search import SAMPLERS
        from apqopt.space import adopt, carried, get_space

        if self.space_def:  # the study carries its space: workers on any machine rebuild it, no file needed
            adopt({"space_def": self.space_def}, f"live study space '{self.space}'")
        else:
            object.__setattr__(self, "space_def", carried(get_space(self.space)).get("space_def", {}))

        if self.kind not in ("search", "measure"):
            raise ConfigError(f"live study kind must be 'search' or 'measure', got {self.kind!r}")
        if self.kind == "search" and self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; live searches use {sorted(SAMPLERS)}")
        if self.budget <= 0:
            raise ConfigError(f"budget must be positive, got {self.budget}")
        if isinstance(self.eval_images, bool) or not isinstance(self.eval_images, int) or self.eval_images < 1:
            raise ConfigError(f"eval_images must be a positive integer, got {self.eval_images!r}")
        if self.measure not in ("fp", "quant"):
            raise ConfigError(f"measure must be 'fp' or 'quant', got {self.measure!r}")
        if not 0 < self.heartbeat_s < self.grace_s:
            raise ConfigError("need 0 < heartbeat_s < grace_s (a trial is stale after grace_s without a beat)")

    def to_json(self) -> str:
        d = asdict(self) | {"objectives": list(self.objectives)}
        if not self.pessimism:
            d.pop("pessimism")
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LiveSpec:
        d = json.loads(text)
        d["objectives"] = tuple(d["objectives"])
        return cls(**d)

    def problem_spec(self, allowed: list[Path] | None = None) -> ProblemSpec:
        """The search problem this study's workers evaluate. ``allowed``: the folders a worker may load the
        study's files from (any other path is refused; None: no check, as when the study is created)."""

        def checked(path: str) -> str | None:
            return (path or None) if allowed is None else _study_file(path, allowed)

        return ProblemSpec(
            self.space,
            self.objectives,
            latency=self.constraints.get("latency"),
            energy=self.constraints.get("energy"),
            predictor=checked(self.predictor),
            lut=checked(self.lut),
            allow_missing=self.allow_missing,
            pessimism=self.pessimism,
        )

    @classmethod
    def for_search(cls, problem: ProblemSpec, **kw: Any) -> LiveSpec:
        """The live search study of a problem: refused where the problem holds what a live study cannot
        carry to its workers (a fixed architecture, APQ's checkpoint)."""
        if problem.architecture is not None:
            raise ConfigError("--architecture: live studies search whole networks; run it without --live")
        if problem.apq_checkpoint:
            raise ConfigError("--apq-checkpoint: live studies take apqopt predictors only; run it without --live")
        return cls(
            "search",
            space=problem.space,
            objectives=problem.objectives,
            constraints=problem.constraints,
            lut=problem.lut or "",
            predictor=problem.predictor or "",
            allow_missing=problem.allow_missing,
            pessimism=problem.pessimism,
            **kw,
        )

    def codec(self) -> RecordCodec:
        """Search studies record like every apqopt study; measure studies have one objective, accuracy."""
        if self.kind == "search":
            return RecordCodec(self.space, self.objectives, self.constraints)
        return RecordCodec(self.space, (), {})


# ---------------------------------------------------------------------- storage and lock
def open_rdb(url: str | None, spec: LiveSpec | None = None, create: bool = True) -> RDBStorage:
    """An RDB storage (SQLite or PostgreSQL URL), with heartbeats when the spec is known; ``create=False``
    (a worker joining a study): a SQLite file that is not there is an error, never a new empty database."""
    url = url or default_storage()
    if parse_storage(url).kind == "journal" or not url.startswith(("sqlite:///", "postgresql")):
        raise StorageError(
            f"live studies need an SQLite or PostgreSQL URL (sqlite:///path.db, postgresql://user@host/db), "
            f"got {url!r}; journal files keep no heartbeats, so killed workers could not be recovered"
        )
    kw: dict[str, Any] = {}
    if spec is not None:
        kw = {
            "heartbeat_interval": spec.heartbeat_s,
            "grace_period": spec.grace_s,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=None),
        }
    with _heartbeat_warnings_off():
        storage = open_storage(url, create=create, **kw)  # connecting: a bad URL fails here
    assert isinstance(storage, RDBStorage)
    return storage


@contextlib.contextmanager
def study_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Serialise ticket-taking across processes and machines for one study."""
    engine = storage.engine
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(f"apqopt:{study_name}".encode())
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    elif engine.dialect.name == "sqlite":
        path = Path(f"{engine.url.database}.{zlib.crc32(study_name.encode()):08x}.lock")
        with path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:  # pragma: no cover - open_rdb admits only the two
        raise StorageError(f"no study lock for {engine.dialect.name}")


# ---------------------------------------------------------------------- creating and enqueueing
def create_live_study(spec: LiveSpec, storage: str | None, name: str) -> optuna.Study:
    """Create the study, or join it when it exists with the same spec (a clear error otherwise)."""
    store = open_rdb(storage, spec)
    study = spec.codec().create_study(store, name, load_if_exists=True)
    stored = study_record(study).live_spec
    if stored is None:
        if study.trials:
            raise StorageError(f"study '{name}' exists and is not an apqopt live study; choose another name")
        set_live_spec(study, spec.to_json())
        write_attrs(study, _summary_attrs(spec))
    elif stored != spec.to_json():
        old = json.loads(stored)
        new = json.loads(spec.to_json())
        diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        raise StorageError(f"study '{name}' exists with other settings (stored, requested): {diff}")
    return study


def _summary_attrs(spec: LiveSpec) -> dict[str, Any]:
    """The attrs every apqopt study carries, so the dashboard lists live studies like recorded ones."""
    return RecordCodec(spec.space, spec.objectives, spec.constraints).study_attrs(
        f"optuna-{spec.sampler}" if spec.kind == "search" else f"measure-{spec.measure}",
        spec.seed,
        spec.budget,
        lut=spec.lut or "shipped",
        predictor=spec.predictor or "shipped",
        trials_hold="every evaluated candidate (live study)",
        **({"problem": spec.problem_spec().to_dict()} if spec.kind == "search" else {}),
    )


def load_spec(study: optuna.Study) -> LiveSpec:
    text = study_record(study).live_spec
    if text is None:
        raise StorageError(f"study '{study.study_name}' is not an apqopt live study (it carries no live spec)")
    return LiveSpec.from_json(text)


def enqueue(study: optuna.Study, genes: np.ndarray) -> int:
    """Put candidates (gene rows) in a ``measure`` study's queue, each once: rows already queued or
    measured (same ``index``) are skipped, so re-running an interrupted enqueue is safe."""
    spec = load_spec(study)
    if spec.kind != "measure":
        raise ConfigError(f"study '{study.study_name}' is a {spec.kind} study; only measure studies take a queue")
    codec = spec.codec()
    genes = codec.space.validate_matrix(np.asarray(genes))
    if len(genes) > spec.budget:
        raise ConfigError(f"{len(genes)} candidates exceed the study's budget of {spec.budget}")
    have = {queue_index(t) for t in study.get_trials(deepcopy=False)}
    added = 0
    for i, row in enumerate(genes):
        if i in have:
            continue
        enqueue_measure(study, codec.params(row), i)
        added += 1
    return added


# ---------------------------------------------------------------------- the worker
@contextlib.contextmanager
def _beating(storage: RDBStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale(study: optuna.Study, rdb: RDBStorage, grace_s: float) -> None:
    """Fail (and re-enqueue) trials whose worker died: those with a stale heartbeat (Optuna's check),
    and those that never got one -- a worker killed between ``ask()`` and its first beat leaves a
    RUNNING trial Optuna never counts as stale, and every other worker would wait for it forever."""
    optuna.storages.fail_stale_trials(study)
    now = datetime.now()  # Optuna stamps datetime_start with the local clock
    beatless = [
        trial_id(t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() > grace_s
        and heartbeat_missing(rdb, trial_id(t))
    ]
    callback = rdb.get_heartbeat_stale_trial_callback()
    for tid in beatless:
        try:
            failed = rdb.set_trial_state_values(tid, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        if failed and callback is not None:
            callback(study, copy.deepcopy(rdb.get_trial(tid)))


@dataclass
class WorkerReport:
    worker: int
    told: int
    wall_s: float
    complete: int


def _count(storage: RDBStorage, study_id: int, *states: TrialState) -> int:
    return storage.get_n_trials(study_id, state=states)


def _claim_worker(study: optuna.Study, storage: RDBStorage) -> int:
    """A worker number unique in the study (seeds each worker's sampler differently)."""
    with study_lock(storage, study.study_name):
        n = int(system_value(storage, study_id(study), WORKERS) or 0)
        set_system_value(storage, study_id(study), WORKERS, n + 1)
    return n


def workers_joined(study: optuna.Study) -> int:
    """How many workers have taken part in the study so far."""
    return int(system_value(storage_of(study), study_id(study), WORKERS) or 0)


def _study_file(path: str, allowed: list[Path]) -> str | None:
    """A file a study names, checked to lie in a folder this worker may read (None: the shipped one)."""
    return str(inside_allowed(path, allowed)) if path else None


def _supernet_file(spec: LiveSpec, allowed: list[Path]) -> Path:
    from apqopt.shipped import supernet_path

    return Path(_study_file(spec.supernet, allowed) or supernet_path(spec.space))


def _pin_supernet(study: optuna.Study, storage: RDBStorage, identity: str) -> None:
    """The first measuring worker records its weights' identity; a worker holding other weights (another
    package version, a retrained file at the same path) is refused before it measures anything."""
    with study_lock(storage, study.study_name):
        stored = system_value(storage, study_id(study), SUPERNET)
        if stored is None:
            set_system_value(storage, study_id(study), SUPERNET, identity)
        elif stored != identity:
            raise StorageError(
                f"study '{study.study_name}' is measured on supernet weights {stored}, this worker has "
                f"{identity}; give it the same weights file (--supernet)"
            )


def _evaluator(spec: LiveSpec, allowed: list[Path]) -> Callable[[optuna.Trial], list[float]]:
    """Turn a trial into objective values (writing its attrs), per study kind."""
    codec = spec.codec()
    if spec.kind == "search":
        from apqopt.search.optuna_search import objective

        problem = spec.problem_spec(allowed).build()
        return objective(problem, active_only=False)  # one fixed search space: NSGA-II's crossover needs it

    from apqopt.supernet.collect import CollectConfig, measure
    from apqopt.supernet.data import accuracy_stderr
    from apqopt.supernet.train import load_supernet

    supernet = load_supernet(_supernet_file(spec, allowed))
    cfg = CollectConfig(kind=spec.measure, space=spec.space, eval_images=spec.eval_images)  # type: ignore[arg-type]
    space = codec.space

    def measured(trial: optuna.Trial) -> list[float]:
        row = codec.suggest(trial)
        index = queue_index(trial)
        if index is None:
            raise StorageError(f"trial {trial.number} of a measure study was not enqueued (it has no queue index)")
        t0 = time.time()
        acc = measure(supernet, space.to_candidates(row[None])[0], cfg, seed=spec.seed * 1_000_003 + index)
        write_measurement(trial, accuracy_stderr(acc, cfg.eval_images), time.time() - t0)
        return [acc]

    return measured


def work(
    storage: str | None,
    study_name: str,
    max_trials: int | None = None,
    progress: bool = True,
    poll_s: float = 0.5,
    allow_dirs: list[str] | None = None,
) -> WorkerReport:
    """Take part in a live study until it holds its budget of complete trials.

    ``max_trials``: stop after telling this many (a worker that leaves early; tests use it).
    ``allow_dirs``: folders (besides ``$APQOPT_HOME``, ``$APQOPT_ALLOW_DIRS``) from which the files a
    study names (predictor, table, supernet) may be loaded; any other path is refused.
    Returns once the study is done (all complete) or this worker's share is over.
    """
    with _heartbeat_warnings_off(), quiet_optuna():
        return _work(storage, study_name, max_trials, progress, poll_s, allowed_dirs(allow_dirs))


def _work(
    storage: str | None, study_name: str, max_trials: int | None, progress: bool, poll_s: float, allowed: list[Path]
) -> WorkerReport:
    t0 = time.perf_counter()
    try:
        spec = load_spec(optuna.load_study(study_name=study_name, storage=open_rdb(storage, create=False)))
    except KeyError:
        raise StorageError(f"no study '{study_name}' in {storage or default_storage()}") from None
    rdb = open_rdb(storage, spec, create=False)
    study = optuna.load_study(study_name=study_name, storage=rdb)
    evaluate = _evaluator(spec, allowed)  # files refused here, before the worker counts as joined
    if spec.kind == "measure":
        from apqopt.supernet.train import weights_identity

        _pin_supernet(study, rdb, weights_identity(_supernet_file(spec, allowed)))
    me = _claim_worker(study, rdb)
    if spec.kind == "search":
        from apqopt.search.optuna_search import SAMPLERS

        study.sampler = SAMPLERS[spec.sampler](spec.seed * 1_000 + me, spec.population)
    sid = study_id(study)
    told = 0
    bar = tqdm(total=spec.budget, desc=f"worker {me} {study_name}", disable=not progress)
    while max_trials is None or told < max_trials:
        fail_stale(study, rdb, spec.grace_s)  # re-enqueue candidates of dead workers
        trial = None
        with study_lock(rdb, study_name):
            waiting = _count(rdb, sid, TrialState.WAITING)
            active = _count(rdb, sid, TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            if waiting or (spec.kind == "search" and active < spec.budget):
                trial = study.ask()
                rdb.record_heartbeat(trial_id(trial))
        if trial is None:
            if _count(rdb, sid, TrialState.RUNNING) == 0:
                break  # nothing waiting, nothing running: the study is done
            time.sleep(poll_s)  # others still evaluating (or stale, soon re-enqueued)
            continue
        with _beating(rdb, trial_id(trial), spec.heartbeat_s):
            try:
                values = evaluate(trial)
            except Exception as exc:
                write_error(trial, exc)
                study.tell(trial, state=TrialState.FAIL)
                raise
            study.tell(trial, values)
        told += 1
        bar.n = _count(rdb, sid, TrialState.COMPLETE)
        bar.refresh()
    bar.close()
    return WorkerReport(me, told, time.perf_counter() - t0, _count(rdb, sid, TrialState.COMPLETE))


__all__ = [
    "LiveSpec",
    "WorkerReport",
    "create_live_study",
    "enqueue",
    "load_spec",
    "open_rdb",
    "study_lock",
    "work",
    "workers_joined",
]
