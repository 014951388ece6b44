"""The one codec between apqopt's candidates/evaluations and Optuna's trials and study attributes.

Why one module: a recorded run (:mod:`apqopt.studies`), a user's ``study.optimize`` objective
(:mod:`apqopt.search.optuna_search`), a live worker (:mod:`apqopt.live`), verification and the
dashboard must write and read the same fields, or a study made one way reads wrongly another way.
A :class:`RecordCodec` is built from (space, objectives, constraints) and knows:

* params <-> genes: each gene is a categorical parameter named after it (``depth_0``, ``b3_kernel``)
  with the gene's real values as choices;
* directions and metric names (``accuracy``, ``latency_ms``, ``energy_mJ``);
* a trial's fields: values = [accuracy, costs...]; user attrs = latency_ms, energy_mJ,
  predicted_accuracy, feasible; one constraint key per limit (``constraints:latency``, Optuna 5's
  ``trial.set_constraint`` form, which its samplers and ``trial.constraints`` read) and the same values
  as one list (``constraints``, what ``constraints_func`` stores and optuna-dashboard reads);
* the study attributes every apqopt study carries (searcher, seed, space, LUT, predictor, ...).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from apqopt.evaluation import Evaluation
from apqopt.hardware.lut import UNITS
from apqopt.optuna_adapter import trial_id
from apqopt.space import BLOCK_GENES, SearchSpace, adopt, carried, get_space

CONSTRAINTS_PREFIX = "constraints:"  # Optuna 5 keeps each named constraint as a system attr with this prefix
CONSTRAINTS_LIST = "constraints"  # what Optuna's constraints_func stores: one list, in the problem's order

# The stored names: spelled here and nowhere else (tests/test_architecture.py greps for them).
# A trial's user attrs: its costs (named by metric_name), the predictor's accuracy and its feasibility;
# a live measure trial's queue index, standard error, seconds, and what a failed one raised.
PREDICTED, MEASURED, FEASIBLE, STDERR = "predicted_accuracy", "measured_accuracy", "feasible", "stderr"
INDEX, SECONDS, ERROR = "index", "seconds", "error"
# A study's user attrs that say what state it is in (:meth:`StudyRecord.state`) and what it holds.
RECORDING, RECORDED, LIVE_SPEC, VERIFIED = "recording", "recorded", "live_spec", "verified"
OUTSIDE, CONTINUED, TRIALS_HOLD = "outside_predictor_data", "continued", "trials_hold"
VERIFY_IMAGES = "verify_images"  # a compare study's measuring images, when not the default
# A study's system attrs: the compressed history of a large run, a live study's worker count and weights.
HISTORY, WORKERS, SUPERNET = "apqopt:history", "apqopt:workers", "apqopt:supernet"


def metric_name(cost: str) -> str:
    """The trial attr / metric name of a cost: ``latency_ms``, ``energy_mJ``."""
    return f"{cost}_{UNITS[cost]}"


LATENCY_MS, ENERGY_MJ = metric_name("latency"), metric_name("energy")


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines off for the block only (the user's own setting is restored)."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass(frozen=True)
class TrialFields:
    """What one evaluated candidate becomes in a trial."""

    params: dict[str, Any]
    values: list[float]
    user_attrs: dict[str, Any]
    constraints: dict[str, float]


@dataclass(frozen=True, eq=False)
class RecordCodec:
    space: SearchSpace
    objectives: tuple[str, ...] = ("latency",)
    constraints: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", get_space(self.space))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "constraints", dict(self.constraints))

    @classmethod
    def of(cls, problem: Any) -> RecordCodec:
        """The codec of a :class:`~apqopt.search.problem.Problem`."""
        return cls(problem.space, problem.objectives, problem.constraints)

    # ------------------------------------------------------------------ study level
    @property
    def directions(self) -> list[str]:
        return ["maximize", *["minimize"] * len(self.objectives)]

    @property
    def metric_names(self) -> list[str]:
        return ["accuracy", *(metric_name(o) for o in self.objectives)]

    def create_study(self, storage: Any, name: str | None, **kw: Any) -> optuna.Study:
        """A new (or, with ``load_if_exists``, joined) study with this codec's directions and metric names."""
        with quiet_optuna():
            study = optuna.create_study(study_name=name, storage=storage, directions=self.directions, **kw)
        if study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna, and the names are what its plots show
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.metric_names)
        return study

    def study_attrs(
        self, searcher: str, seed: int, budget: int, lut: str, predictor: str, trials_hold: str, **extra: Any
    ) -> dict[str, Any]:
        """The user attrs every apqopt study carries, whatever wrote it."""
        return {
            "searcher": searcher,
            "seed": seed,
            "space": self.space.name,
            **carried(self.space),
            "lut": lut,
            "predictor": predictor,
            "objectives": list(self.objectives),
            "constraints": dict(self.constraints),
            "budget": budget,
            "trials_hold": trials_hold,
            **_jsonable(extra),
        }

    # ------------------------------------------------------------------ params <-> genes
    def distributions(self) -> dict[str, CategoricalDistribution]:
        sp = self.space
        return {n: CategoricalDistribution(list(sp.gene_values(g))) for g, n in enumerate(sp.gene_names())}

    def params(self, row: np.ndarray) -> dict[str, Any]:
        sp = self.space
        return {n: sp.gene_values(g)[int(row[g])] for g, n in enumerate(sp.gene_names())}

    def active_params(self, row: np.ndarray) -> dict[str, Any]:
        """Params of the genes that have an effect: the stage depths and the blocks they switch on. What a
        recorded trial stores, so Optuna's importances and slice plots see only choices that mattered
        (:meth:`genes` gives dormant blocks their canonical value back)."""
        sp = self.space
        names = sp.gene_names()
        active = sp.active(np.asarray(row)[None])[0]
        keep = [g for g in range(sp.n_genes) if g < sp.n_stages or active[(g - sp.n_stages) // len(BLOCK_GENES)]]
        return {names[g]: sp.gene_values(g)[int(row[g])] for g in keep}

    def genes(self, params: Mapping[str, Any]) -> np.ndarray:
        """The gene row of a trial's params. Params of dormant blocks may be absent (define-by-run trials
        suggest only active blocks; they get the canonical value, 0); any other missing param is an error."""
        sp = self.space
        names = sp.gene_names()
        row = np.zeros(sp.n_genes, dtype=np.int64)
        for g in range(sp.n_stages):
            if names[g] not in params:
                raise KeyError(f"trial has no param '{names[g]}' of space '{sp.name}'")
            row[g] = sp.gene_values(g).index(params[names[g]])
        active = sp.active(row[None])[0]
        for g in range(sp.n_stages, sp.n_genes):
            if names[g] in params:
                row[g] = sp.gene_values(g).index(params[names[g]])
            elif active[(g - sp.n_stages) // len(BLOCK_GENES)]:
                raise KeyError(f"trial has no param '{names[g]}' of space '{sp.name}'")
        return row

    def suggest(
        self,
        trial: optuna.Trial,
        lo: np.ndarray | None = None,
        hi: np.ndarray | None = None,
        active_only: bool = False,
    ) -> np.ndarray:
        """Ask the trial for the genes (an enqueued trial returns its fixed params) and return the row.

        ``active_only`` (define-by-run): the stage depths first, then only the blocks they switch on, so
        no trial carries params that have no effect (they would pollute importances and slice plots);
        dormant genes take the canonical value. The fixed-length form (every gene, every trial) is for
        samplers that need one search space, such as NSGA-II. ``lo``/``hi`` restrict each gene's
        choices (fixed genes of a restricted problem)."""
        sp = self.space
        lo = np.zeros_like(sp.cardinalities) if lo is None else lo
        hi = sp.cardinalities - 1 if hi is None else hi
        names = sp.gene_names()

        def ask(g: int) -> int:
            values = sp.gene_values(g)[lo[g] : hi[g] + 1]
            return int(lo[g] + values.index(trial.suggest_categorical(names[g], list(values))))

        if not active_only:
            return np.array([ask(g) for g in range(sp.n_genes)], dtype=np.int64)
        row = np.array(lo, dtype=np.int64)
        row[: sp.n_stages] = [ask(g) for g in range(sp.n_stages)]
        for b in np.flatnonzero(sp.active(row[None])[0]):
            for f in BLOCK_GENES:
                g = sp.block_gene(int(b), f)
                row[g] = ask(g)
        return sp.canonical(row[None])[0]

    # ------------------------------------------------------------------ trial level
    def fields(self, ev: Any, i: int) -> TrialFields:
        """Trial fields of row i of an :class:`~apqopt.search.problem.Evaluation`."""
        g = {n: float(ev.cost(n)[i] - limit) for n, limit in self.constraints.items()}
        return TrialFields(
            params=self.active_params(ev.genes[i]),
            values=[float(ev.accuracy[i]), *(float(ev.cost(o)[i]) for o in self.objectives)],
            user_attrs={
                LATENCY_MS: float(ev.latency[i]),
                ENERGY_MJ: float(ev.energy[i]),
                PREDICTED: float(ev.accuracy[i]),
                FEASIBLE: bool(ev.feasible[i]),
            },
            constraints=g,
        )

    def write(self, trial: optuna.Trial, ev: Any, i: int) -> list[float]:
        """Write row i's attrs and constraints into a running trial; return the values to ``tell``."""
        f = self.fields(ev, i)
        for name, value in f.constraints.items():
            trial.set_constraint(name, value)  # one key per constraint: 'constraints:<name>' (Optuna 5)
        if f.constraints:  # and the list form that optuna-dashboard and samplers' constraints_func read
            trial.storage.set_trial_system_attr(trial_id(trial), CONSTRAINTS_LIST, list(f.constraints.values()))
        for key, value in f.user_attrs.items():
            trial.set_user_attr(key, value)
        return f.values

    def read(self, trials: list[optuna.trial.FrozenTrial]) -> Evaluation:
        """The finished trials back as an :class:`~apqopt.evaluation.Evaluation` (genes from params, the
        predictor's accuracy, costs, constraint excess): the inverse of :meth:`frozen_trial`."""
        return read_evaluation(trials, self)

    @staticmethod
    def violation(trial: optuna.trial.FrozenTrial) -> float:
        """Sum of positive constraint excesses (the list form, ``constraints``, repeats the named keys for
        readers of Optuna's older form, such as optuna-dashboard, and is not counted)."""
        return float(sum(max(0.0, v) for k, v in trial.system_attrs.items() if k.startswith(CONSTRAINTS_PREFIX)))

    def frozen_trial(self, ev: Any, i: int, dists: dict[str, CategoricalDistribution]) -> optuna.trial.FrozenTrial:
        """Row i as a finished trial for ``study.add_trials`` (same fields as :meth:`write`)."""
        f = self.fields(ev, i)
        now = datetime.now()
        # FrozenTrial directly (create_trial re-checks 125 distributions per trial: ~1.3 ms of a ~2 ms write);
        # the params are valid by construction (gene rows of the space), constraints set by Optuna's own method
        trial = optuna.trial.FrozenTrial(
            number=0,
            state=optuna.trial.TrialState.COMPLETE,
            value=None,
            values=f.values,
            datetime_start=now,
            datetime_complete=now,
            params=f.params,
            distributions={name: dists[name] for name in f.params},
            user_attrs=f.user_attrs,
            system_attrs={CONSTRAINTS_LIST: list(f.constraints.values())} if f.constraints else {},
            intermediate_values={},
            trial_id=0,
        )
        for name, value in f.constraints.items():
            trial.set_constraint(name, value)
        return trial


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ---------------------------------------------------------------------- reading trials
def read_evaluation(trials: list[optuna.trial.FrozenTrial], codec: RecordCodec | None = None) -> Evaluation:
    """Trials as an Evaluation; without a codec (a study that names no space) the genes are empty rows."""
    n = len(trials)
    if codec is None or not n:
        genes = np.zeros((n, 0 if codec is None else codec.space.n_genes), dtype=np.int64)
    else:
        genes = np.stack([codec.genes(t.params) for t in trials]).astype(np.int64)
    return Evaluation(
        genes,
        np.array([t.user_attrs.get(PREDICTED, t.values[0] if t.values else np.nan) for t in trials], dtype=float),
        np.array([t.user_attrs.get(LATENCY_MS, np.nan) for t in trials], dtype=float),
        np.array([t.user_attrs.get(ENERGY_MJ, np.nan) for t in trials], dtype=float),
        np.array([RecordCodec.violation(t) for t in trials], dtype=float),
    )


def feasible_of(flag: Any, violation: float) -> bool:
    """One rule for every reader: a trial's stored ``feasible`` flag; a trial without one (a user's own
    objective, a foreign writer) is feasible unless its Optuna constraints are exceeded."""
    return violation <= 0 if flag is None else bool(flag)


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial as the tables show it (:func:`read_trial`)."""

    number: int
    state: str
    accuracy: float  # the first value: predicted (search studies) or measured (measure studies)
    latency: float
    energy: float
    feasible: bool


def read_trial(t: optuna.trial.FrozenTrial) -> TrialRecord:
    u = t.user_attrs
    return TrialRecord(
        t.number,
        t.state.name,
        float(t.values[0]) if t.values else np.nan,
        float(u.get(LATENCY_MS, np.nan)),
        float(u.get(ENERGY_MJ, np.nan)),
        feasible_of(u.get(FEASIBLE), RecordCodec.violation(t)),
    )


# ---------------------------------------------------------------------- live measure trials
def enqueue_measure(study: optuna.Study, params: dict[str, Any], index: int) -> None:
    """Queue one candidate of a measure study under its index (what makes re-enqueueing safe)."""
    study.enqueue_trial(params, user_attrs={INDEX: index}, skip_if_exists=False)


def queue_index(t: optuna.trial.FrozenTrial | optuna.Trial) -> int | None:
    """The queue index of a measure study's trial (None: not an enqueued one)."""
    index = t.user_attrs.get(INDEX)
    return None if index is None else int(index)


def write_measurement(trial: optuna.Trial, stderr: float, seconds: float) -> None:
    trial.set_user_attr(STDERR, stderr)
    trial.set_user_attr(SECONDS, round(seconds, 2))


def write_error(trial: optuna.Trial, exc: BaseException) -> None:
    """What a failed trial raised, kept in the trial (the dashboard and ``optuna`` show it)."""
    trial.set_user_attr(ERROR, f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------- reading and writing study attrs
StudyState = Literal["complete", "incomplete", "live", "foreign"]


@dataclass(frozen=True)
class Verified:
    """A measured trial of a study (kept in its ``verified`` attr: finished trials cannot change)."""

    measured_accuracy: float
    stderr: float
    predicted_accuracy: float
    latency_ms: float

    def to_attr(self) -> dict[str, float]:
        return {
            MEASURED: self.measured_accuracy,
            STDERR: self.stderr,
            PREDICTED: self.predicted_accuracy,
            LATENCY_MS: self.latency_ms,
        }

    @classmethod
    def from_attr(cls, d: Mapping[str, Any]) -> Verified:
        nan = float("nan")
        return cls(
            float(d.get(MEASURED, nan)),
            float(d.get(STDERR, nan)),
            float(d.get(PREDICTED, nan)),
            float(d.get(LATENCY_MS, nan)),
        )


@dataclass(frozen=True)
class StudyRecord:
    """A study's user attrs, typed: the one reader of what :meth:`RecordCodec.study_attrs`, the
    recorder, ``compare``, ``verify`` and live studies store. ``attrs`` keeps everything as stored."""

    attrs: Mapping[str, Any] = field(default_factory=dict)

    searcher: str | None = field(init=False)
    seed: int | None = field(init=False)
    space_name: str | None = field(init=False)
    lut: str = field(init=False)
    budget: int | None = field(init=False)
    evaluated: int | None = field(init=False)
    requested: int | None = field(init=False)
    stopped_early: bool = field(init=False)
    hypervolume: float | None = field(init=False)
    measured_hypervolume: float | None = field(init=False)
    wall_s: float | None = field(init=False)
    eval_s: float | None = field(init=False)
    compare_tag: str | None = field(init=False)
    live_spec: str | None = field(init=False)
    holds_every_candidate: bool = field(init=False)

    def __post_init__(self) -> None:
        a = self.attrs
        for name, key in (
            ("searcher", "searcher"),
            ("seed", "seed"),
            ("space_name", "space"),
            ("budget", "budget"),
            ("evaluated", "evaluated"),
            ("hypervolume", "hypervolume"),
            ("measured_hypervolume", "measured_hypervolume"),
            ("wall_s", "wall_s"),
            ("eval_s", "eval_s"),
            ("compare_tag", "compare"),
            ("live_spec", LIVE_SPEC),
        ):
            object.__setattr__(self, name, a.get(key))
        object.__setattr__(self, "lut", a.get("lut", ""))
        object.__setattr__(self, "requested", a.get("requested", a.get("evaluated")))
        object.__setattr__(self, "stopped_early", bool(a.get("stopped_early", False)))
        object.__setattr__(self, "holds_every_candidate", a.get(TRIALS_HOLD) == "every evaluated candidate")

    def _get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    @property
    def hv_curve(self) -> list[tuple[int, float]]:
        return [(int(c), float(h)) for c, h in self._get("hv_curve", [])]

    @property
    def reference_point(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self._get("reference_point", ()))

    @property
    def latency_budgets(self) -> list[float]:
        return [float(b) for b in self._get("latency_budgets", [])]

    @property
    def verify_images(self) -> str:
        """What the study's verified candidates were measured on (a key of ``apqopt.verify.IMAGES``)."""
        return str(self._get(VERIFY_IMAGES, "val"))

    @property
    def problem(self) -> dict[str, Any] | None:
        """The :class:`~apqopt.problem_spec.ProblemSpec` (as a dict) the study's problem was built from."""
        return self._get("problem")

    @property
    def continued(self) -> list[dict[str, Any]]:
        return list(self._get(CONTINUED, []))

    @property
    def constraints(self) -> dict[str, float]:
        return dict(self._get("constraints") or {})

    @property
    def settings(self) -> str | None:
        """The digest of the newest writer's settings (a continuation's, while it writes)."""
        return (self._get(RECORDING) or self._get(RECORDED) or {}).get("settings")

    @property
    def recorded_settings(self) -> str | None:
        return (self._get(RECORDED) or {}).get("settings")

    @property
    def writer(self) -> dict[str, Any]:
        """host and pid of the process that began writing the study ({} if none is known)."""
        return dict(self._get(RECORDING) or {})

    @property
    def verified(self) -> dict[int, Verified]:
        return {int(n): Verified.from_attr(v) for n, v in (self._get(VERIFIED) or {}).items()}

    def space(self) -> SearchSpace:
        return space_from_attrs(self.attrs)

    def codec(self) -> RecordCodec:
        """The codec that reads this study's trials (its space, objectives and limits)."""
        return RecordCodec(self.space(), tuple(self._get("objectives", ("latency",))), self.constraints)

    def state(self, n_trials: int = 0, directions: list[str] | None = None) -> StudyState:
        """What the study is: a whole recorded run, an interrupted one, a live study, or not apqopt's.
        A study with no attrs and no trials was cut right after its creation -- if it is shaped like
        apqopt's (accuracy maximised, then costs minimised; ``directions`` where known): an empty
        ``optuna.create_study()`` of someone else is foreign, not a run to redo."""
        attrs = self.attrs
        if RECORDED in attrs:  # whole, unless a continuation (a newer ``recording``) was cut short
            writing = attrs.get(RECORDING)
            done = writing is None or writing.get("settings") == attrs[RECORDED].get("settings")
            return "complete" if done else "incomplete"
        if LIVE_SPEC in attrs:
            return "live"
        if not attrs and not n_trials:
            ours = directions is None or (len(directions) >= 2 and directions[0] == "MAXIMIZE")
            return "incomplete" if ours else "foreign"
        if RECORDING in attrs:
            return "incomplete"
        if {"space", "searcher"} <= set(attrs):  # recorded before the markers existed
            return "complete"
        return "foreign"


def study_record(study: optuna.Study | Any) -> StudyRecord:
    """The typed record of a study (or of a study summary: both carry ``user_attrs``)."""
    return StudyRecord(dict(study.user_attrs))


def stored_record(store: optuna.storages.BaseStorage, study_id: int) -> StudyRecord:
    """The record of a study by its storage id (no Study object needed)."""
    return StudyRecord(store.get_study_user_attrs(study_id))


def write_attrs(study: optuna.Study, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        study.set_user_attr(key, value)


def mark_recording(study: optuna.Study, writer: dict[str, Any]) -> None:
    """First mark of a recorded study: who writes it, with which settings (``host``, ``pid``, ``settings``)."""
    study.set_user_attr(RECORDING, writer)


def mark_recorded(study: optuna.Study, trials: int, settings: str) -> None:
    """Last mark: the study is whole."""
    study.set_user_attr(RECORDED, {"trials": trials, "settings": settings})


def run_extras(
    outside: dict[str, Any] | None = None,
    verified: Mapping[int, Verified] | None = None,
    continued: list[dict[str, Any]] | None = None,
    history: str | None = None,
) -> dict[str, Any]:
    """The study attrs a recorded run adds to :meth:`RecordCodec.study_attrs` where it has them."""
    out: dict[str, Any] = {}
    if outside is not None:
        out[OUTSIDE] = outside
    if verified:
        out[VERIFIED] = {str(n): v.to_attr() for n, v in verified.items()}
    if continued is not None:
        out[CONTINUED] = continued
    if history is not None:
        out["history"] = history
    return out


def compare_attrs(
    tag: str,
    hypervolume: float,
    reference_point: tuple[float, float],
    hv_curve: list[tuple[int, float]],
    latency_budgets: list[float],
    measured_hypervolume: float | None = None,
    verify_images: str = "val",
) -> dict[str, Any]:
    """What ``compare`` keeps in each run's study so a report can be rebuilt from the storage alone."""
    out: dict[str, Any] = {
        "compare": tag,
        "hypervolume": hypervolume,
        "reference_point": list(reference_point),
        "hv_curve": hv_curve,
        "latency_budgets": latency_budgets,
    }
    if measured_hypervolume is not None:
        out["measured_hypervolume"] = measured_hypervolume
        if verify_images != "val":  # absent: val, as every study recorded before the choice
            out[VERIFY_IMAGES] = verify_images
    return out


def add_verified(study: optuna.Study, new: Mapping[int, Verified]) -> dict[int, Verified]:
    """Merge measurements into the study's ``verified`` attr; returns the whole of it."""
    merged = {**study_record(study).verified, **new}
    study.set_user_attr(VERIFIED, {str(n): v.to_attr() for n, v in merged.items()})
    return merged


def set_live_spec(study: optuna.Study, text: str) -> None:
    study.set_user_attr(LIVE_SPEC, text)


# ---------------------------------------------------------------------- system attrs
def history_parts(store: optuna.storages.BaseStorage, study_id: int) -> tuple[dict[str, Any] | None, list[Any]]:
    """(header, chunks) of a large run's compressed history (None, []: the study keeps no history)."""
    system = store.get_study_system_attrs(study_id)
    head = system.get(HISTORY)
    if head is None:
        return None, []
    return head, [system.get(f"{HISTORY}:{k}") for k in range(int(head["chunks"]))]


def write_history(store: optuna.storages.BaseStorage, study_id: int, chunks: list[str], header: dict[str, Any]) -> None:
    for k, chunk in enumerate(chunks):
        store.set_study_system_attr(study_id, f"{HISTORY}:{k}", chunk)
    store.set_study_system_attr(study_id, HISTORY, header)  # last: a reader that finds it finds every chunk


def system_value(store: optuna.storages.BaseStorage, study_id: int, key: str) -> Any:
    return store.get_study_system_attrs(study_id).get(key)


def set_system_value(store: optuna.storages.BaseStorage, study_id: int, key: str, value: Any) -> None:
    store.set_study_system_attr(study_id, key, value)


def space_from_attrs(attrs: Mapping[str, Any]) -> SearchSpace:
    """The space of a recorded study: a preset by name, or the description a study of a user's own space
    carries (``space_def``), so any process on any machine can read the study without the space file."""
    adopt(dict(attrs), f"study space '{attrs.get('space')}'")
    return get_space(attrs["space"])


__all__ = [
    "CONSTRAINTS_PREFIX",
    "RecordCodec",
    "StudyRecord",
    "TrialFields",
    "TrialRecord",
    "Verified",
    "feasible_of",
    "metric_name",
    "quiet_optuna",
    "read_trial",
    "study_record",
]
