"""Optuna samplers as searchers, through ask-and-tell in batches, plus an objective for `study.optimize`.

What a trial holds (params, values, attrs, constraints) is :class:`apqopt.record.RecordCodec`'s
business; this module only drives the samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from tqdm import tqdm

from apqopt.record import RecordCodec, quiet_optuna
from apqopt.search.base import Run, Searcher
from apqopt.search.problem import Problem

SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "nsga2": lambda seed, pop: optuna.samplers.NSGAIISampler(population_size=pop, seed=seed),
    "tpe": lambda seed, pop: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=pop),
    "random": lambda seed, pop: optuna.samplers.RandomSampler(seed=seed),
}


def directions(problem: Problem) -> list[str]:
    """``directions=`` for ``optuna.create_study`` on this problem: accuracy up, costs down."""
    return RecordCodec.of(problem).directions


def metric_names(problem: Problem) -> list[str]:
    """Names for ``study.set_metric_names``: ``accuracy``, ``latency_ms``, ``energy_mJ``."""
    return RecordCodec.of(problem).metric_names


def objective(problem: Problem) -> Callable[[optuna.Trial], list[float]]:
    """An objective for a user's own ``study.optimize`` (one candidate per call; the number of trials is
    the budget). Each trial gets apqopt's params, attrs and constraints (see :mod:`apqopt.record`)."""
    codec = RecordCodec.of(problem)
    lo, hi = problem.gene_bounds()

    def fn(trial: optuna.Trial) -> list[float]:
        ev = problem.evaluate(codec.suggest(trial, lo, hi)[None])
        return codec.write(trial, ev, 0)

    return fn


class OptunaNSGA2(Searcher):
    """Optuna's NSGA-II sampler (other samplers: see the subclasses)."""

    name = "optuna-nsga2"
    summary = "Optuna's NSGAIISampler through ask-and-tell"
    sampler = "nsga2"

    def __init__(
        self, seed: int = 0, batch: int = 100, storage: str | None = None, study_name: str | None = None
    ) -> None:
        super().__init__(seed)
        self.batch, self.storage, self.study_name = batch, storage, study_name
        self._study: optuna.Study | None = None

    def make_study(self, problem: Problem) -> optuna.Study:
        study = RecordCodec.of(problem).create_study(self.storage, self.study_name)
        study.sampler = SAMPLERS[self.sampler](self.seed, self.batch)
        return study

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        problem = run.problem
        codec = RecordCodec.of(problem)
        lo, hi = problem.gene_bounds()
        study = self._study = self.make_study(problem)
        bar = tqdm(total=run.budget, desc=self.name, disable=not progress)
        with quiet_optuna():
            while run.remaining > 0:
                trials = [study.ask() for _ in range(min(self.batch, run.remaining))]
                genes = np.stack([codec.suggest(t, lo, hi) for t in trials])
                ev = run.evaluate(genes)
                for i, t in enumerate(trials):
                    study.tell(t, codec.write(t, ev, i))
                bar.update(len(trials))
        bar.close()
        return {"study_name": study.study_name}


class OptunaTPE(OptunaNSGA2):
    name = "optuna-tpe"
    summary = "Optuna's multivariate TPESampler (slow past a few hundred trials)"
    sampler = "tpe"


class OptunaRandom(OptunaNSGA2):
    name = "optuna-random"
    summary = "Optuna's RandomSampler (pays budget for infeasible candidates)"
    sampler = "random"
