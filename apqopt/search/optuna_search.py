"""Optuna samplers as searchers, through ask-and-tell in batches, plus an objective for `study.optimize`.

What a trial holds (params, values, attrs, constraints) is :class:`apqopt.record.RecordCodec`'s
business; this module only drives the samplers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from apqopt.record import RecordCodec, quiet_optuna
from apqopt.search.base import Run, Searcher, feasible_start
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


def objective(problem: Problem, active_only: bool = True) -> Callable[[optuna.Trial], list[float]]:
    """An objective for a user's own ``study.optimize``: one candidate per trial, so ``n_trials`` is the
    budget (a Problem keeps no count; stop a study with Optuna's own ``MaxTrialsCallback`` if you like).

    Each trial gets apqopt's params, attrs and one constraint per limit (see :mod:`apqopt.record`), and the
    study gets metric names (``accuracy``, ``latency_ms``, ...) on the first trial if it has none.
    ``active_only=True`` (define-by-run): stage depths first, then only the blocks they switch on, so no
    param is without effect; ``False``: every gene on every trial, for samplers that need one fixed search
    space (NSGA-II's crossover works on it; TPE and random sample either form)."""
    codec = RecordCodec.of(problem)
    lo, hi = problem.gene_bounds()

    def fn(trial: optuna.Trial) -> list[float]:
        if trial.study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna; the names are what its plots show
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial.study.set_metric_names(codec.metric_names)
        ev = problem.evaluate(codec.suggest(trial, lo, hi, active_only=active_only)[None])
        return codec.write(trial, ev, 0)

    return fn


class OptunaNSGA2(Searcher):
    """Optuna's NSGA-II sampler (other samplers: see the subclasses).

    ``feasible=True`` applies the rules every apqopt searcher plays by: the first ``batch`` trials are a
    feasible, distinct starting population (enqueued, drawn as every searcher draws it), and an asked
    candidate that breaks a constraint is told as FAIL and asked again (at most ``max_tries`` times per
    slot) instead of being evaluated: hardware cost is free, only predictor evaluations of distinct
    networks are the budget. Failed re-draws stay in the sampler's own study, not in the recorded run.
    """

    name = "optuna-nsga2"
    summary = "Optuna's NSGAIISampler through ask-and-tell (feasible start, infeasible asks re-drawn)"
    sampler = "nsga2"

    def __init__(
        self,
        seed: int = 0,
        batch: int = 100,
        storage: str | None = None,
        study_name: str | None = None,
        feasible: bool = True,
        max_tries: int = 50,
    ) -> None:
        super().__init__(seed)
        self.batch, self.storage, self.study_name = batch, storage, study_name
        self.feasible, self.max_tries = feasible, max_tries
        self._study: optuna.Study | None = None

    def make_study(self, problem: Problem) -> optuna.Study:
        study = RecordCodec.of(problem).create_study(self.storage, self.study_name)
        study.sampler = SAMPLERS[self.sampler](self.seed, self.batch)
        return study

    def _ask(
        self, study: optuna.Study, run: Run, codec: RecordCodec, bounds: tuple[np.ndarray, np.ndarray]
    ) -> tuple[optuna.Trial, np.ndarray, int]:
        """One trial and its gene row; infeasible asks re-drawn (told as FAIL) when ``feasible``."""
        redrawn = 0
        while True:
            trial = study.ask()
            row = codec.suggest(trial, *bounds)
            if not self.feasible or redrawn >= self.max_tries or run.problem.cost(row[None])[2][0] <= 0:
                return trial, row, redrawn
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            redrawn += 1

    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        problem = run.problem
        codec = RecordCodec.of(problem)
        bounds = problem.gene_bounds()
        study = self._study = self.make_study(problem)
        if self.feasible:
            rng = np.random.default_rng(self.seed)
            # a full batch whatever the budget (enqueued rows past it are never asked): a larger budget
            # walks the same path first, so a study can be continued (``search --continue``)
            start, _ = feasible_start(problem, self.batch, rng, self.max_tries, run)
            for row in start:
                study.enqueue_trial(codec.params(row))
        redrawn = 0
        with quiet_optuna():
            while not run.done:
                asked = [self._ask(study, run, codec, bounds) for _ in range(min(self.batch, run.remaining))]
                redrawn += sum(r for _, _, r in asked)
                ev = run.evaluate(np.stack([row for _, row, _ in asked]))
                for i, (t, _, _) in enumerate(asked):  # every asked trial is evaluated: new ones <= remaining
                    study.tell(t, codec.write(t, ev, i))
        return {"study_name": study.study_name, "infeasible_redrawn": redrawn}


class OptunaTPE(OptunaNSGA2):
    name = "optuna-tpe"
    summary = "Optuna's multivariate TPESampler (slow past a few hundred trials)"
    sampler = "tpe"


class OptunaRandom(OptunaNSGA2):
    name = "optuna-random"
    summary = "Optuna's RandomSampler, feasible start and infeasible asks re-drawn like every searcher"
    sampler = "random"


class OptunaRandomRaw(OptunaNSGA2):
    """Optuna's RandomSampler without apqopt's rules: what an unconstrained sampler pays for infeasible
    candidates (the comparison that shows the rule's effect)."""

    name = "optuna-random-raw"
    summary = "Optuna's RandomSampler as is: pays budget for every infeasible candidate"
    sampler = "random"

    def __init__(
        self,
        seed: int = 0,
        batch: int = 100,
        storage: str | None = None,
        study_name: str | None = None,
        feasible: bool = False,
        max_tries: int = 50,
    ) -> None:
        super().__init__(seed, batch, storage, study_name, feasible, max_tries)
