"""Optuna samplers as searchers, through ask-and-tell in batches, plus an objective for `study.optimize`.

Each gene is a categorical parameter named after it (``depth_0``, ``b3_kernel``, ...), with the
gene's real values as choices. Constraints are recorded in both Optuna forms: the per-name form of
Optuna 5 (``trial.set_constraint``) that the samplers read, and the list form
(system attr ``constraints``) that optuna-dashboard 0.21 reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm

from apqopt.search.base import Searcher, register
from apqopt.search.problem import Evaluation, Problem
from apqopt.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "nsga2": lambda seed, pop: optuna.samplers.NSGAIISampler(population_size=pop, seed=seed),
    "tpe": lambda seed, pop: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=pop),
    "random": lambda seed, pop: optuna.samplers.RandomSampler(seed=seed),
}


def directions(problem: Problem) -> list[str]:
    return ["maximize", *["minimize"] * len(problem.objectives)]


def suggest_genes(trial: optuna.Trial, problem: Problem | SearchSpace) -> np.ndarray:
    """Ask the trial for every gene (an enqueued trial returns its fixed params); returns the gene row
    (choice indices). A problem restricts the choices of its fixed genes."""
    sp = problem if isinstance(problem, SearchSpace) else problem.space
    lo, hi = (np.zeros_like(sp.cardinalities), sp.cardinalities - 1) if sp is problem else problem.gene_bounds()
    row = []
    for g, name in enumerate(sp.gene_names()):
        values = sp.gene_values(g)[lo[g] : hi[g] + 1]
        row.append(lo[g] + values.index(trial.suggest_categorical(name, list(values))))
    return np.array(row, dtype=np.int64)


def record_outcome(trial: optuna.Trial, problem: Problem, ev: Evaluation, i: int) -> list[float]:
    """Write constraints (both forms) and cost attributes of row i; return the objective values."""
    g = problem.constraint_matrix(ev)[i]
    for name, value in zip(problem.constraints, g):
        trial.set_constraint(name, float(value))
    if len(g):
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [float(v) for v in g])
    trial.set_user_attr("latency_ms", float(ev.latency[i]))
    trial.set_user_attr("energy_mJ", float(ev.energy[i]))
    trial.set_user_attr("predicted_accuracy", float(ev.accuracy[i]))
    trial.set_user_attr("feasible", bool(ev.feasible[i]))
    return [float(v) for v in (ev.accuracy[i], *(ev.cost(o)[i] for o in problem.objectives))]


def objective(problem: Problem) -> Callable[[optuna.Trial], list[float]]:
    """An objective for a user's own ``study.optimize`` (one candidate per call)."""

    def fn(trial: optuna.Trial) -> list[float]:
        ev = problem.evaluate(suggest_genes(trial, problem)[None])
        return record_outcome(trial, problem, ev, 0)

    return fn


@register
class OptunaNSGA2(Searcher):
    """Optuna's NSGA-II sampler (other samplers: see the subclasses)."""

    name = "optuna-nsga2"
    sampler = "nsga2"

    def __init__(
        self, seed: int = 0, batch: int = 100, storage: str | None = None, study_name: str | None = None
    ) -> None:
        super().__init__(seed)
        self.batch, self.storage, self.study_name = batch, storage, study_name
        self._study: optuna.Study | None = None

    def make_study(self, problem: Problem) -> optuna.Study:
        return optuna.create_study(
            directions=directions(problem),
            sampler=SAMPLERS[self.sampler](self.seed, self.batch),
            storage=self.storage,
            study_name=self.study_name,
        )

    def _search(self, problem: Problem, progress: bool) -> dict[str, Any]:
        study = self._study = self.make_study(problem)
        bar = tqdm(total=problem.budget, desc=self.name, disable=not progress)
        while problem.remaining > 0:
            trials = [study.ask() for _ in range(min(self.batch, problem.remaining))]
            genes = np.stack([suggest_genes(t, problem) for t in trials])
            ev = problem.evaluate(genes)
            for i, t in enumerate(trials):
                study.tell(t, record_outcome(t, problem, ev, i))
            bar.update(len(trials))
        bar.close()
        return {"study_name": study.study_name}


@register
class OptunaTPE(OptunaNSGA2):
    name = "optuna-tpe"
    sampler = "tpe"


@register
class OptunaRandom(OptunaNSGA2):
    name = "optuna-random"
    sampler = "random"
