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
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from apqopt.hardware.lut import UNITS
from apqopt.optuna_adapter import trial_id
from apqopt.space import BLOCK_GENES, SearchSpace, adopt, carried, get_space

CONSTRAINTS_PREFIX = "constraints:"  # Optuna 5 keeps each named constraint as a system attr with this prefix
CONSTRAINTS_LIST = "constraints"  # what Optuna's constraints_func stores: one list, in the problem's order


def metric_name(cost: str) -> str:
    """The trial attr / metric name of a cost: ``latency_ms``, ``energy_mJ``."""
    return f"{cost}_{UNITS[cost]}"


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
                "latency_ms": float(ev.latency[i]),
                "energy_mJ": float(ev.energy[i]),
                "predicted_accuracy": float(ev.accuracy[i]),
                "feasible": bool(ev.feasible[i]),
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


__all__ = ["CONSTRAINTS_PREFIX", "RecordCodec", "TrialFields", "metric_name", "quiet_optuna"]


def space_from_attrs(attrs: Mapping[str, Any]) -> SearchSpace:
    """The space of a recorded study: a preset by name, or the description a study of a user's own space
    carries (``space_def``), so any process on any machine can read the study without the space file."""
    adopt(dict(attrs), f"study space '{attrs.get('space')}'")
    return get_space(attrs["space"])
