"""The searcher interface, and :class:`Run`: one searcher run's evaluation log and budget.

A searcher knows nothing of networks or hardware: it sees a :class:`Problem` (genes in, objectives
and constraint violations out) through a :class:`Run`, which counts evaluations against the budget
and keeps everything evaluated (pymoo's split: the problem defines, the evaluator counts). The list
of searchers is in :mod:`apqopt.search` (``SEARCHERS``), as Optuna lists its samplers.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from apqopt.errors import ConfigError
from apqopt.search.problem import BudgetExhaustedError, Evaluation, Problem


class Run:
    """The evaluation log of one searcher run on a problem: counts evaluations against ``budget``.

    Why apart from :class:`Problem`: a problem is a definition that many runs (searchers x seeds,
    workers) share; what was evaluated and how much budget is left belong to one run.
    """

    def __init__(self, problem: Problem, budget: int) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget <= 0:
            raise ConfigError(f"budget must be a positive whole number of evaluations, got {budget!r}")
        self.problem = problem
        self.budget = int(budget)
        self.n_evaluated = 0
        self.eval_seconds = 0.0
        self._parts: list[Evaluation] = []

    @property
    def remaining(self) -> int:
        return self.budget - self.n_evaluated

    def evaluate(self, genes: np.ndarray) -> Evaluation:
        """Evaluate a batch on the problem; only the first ``remaining`` rows are evaluated."""
        if self.remaining <= 0:
            raise BudgetExhaustedError(f"budget of {self.budget} evaluations is spent")
        genes = np.asarray(genes)[: self.remaining]
        t0 = time.perf_counter()
        ev = self.problem.evaluate(genes)
        self.eval_seconds += time.perf_counter() - t0
        self.n_evaluated += len(ev)
        self._parts.append(ev)
        return ev

    def evaluated(self) -> Evaluation:
        """Everything evaluated so far, in order."""
        if len(self._parts) > 1:
            self._parts = [Evaluation.concat(self._parts)]
        return self._parts[0] if self._parts else Evaluation.concat([])


@dataclass
class SearchResult:
    searcher: str
    seed: int
    params: dict[str, Any]
    evaluated: Evaluation
    wall_s: float
    eval_s: float
    budget: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def best(self) -> int:
        """Index of the most accurate feasible candidate (-1 if none is feasible)."""
        feas = self.evaluated.feasible
        if not feas.any():
            return -1
        return int(np.flatnonzero(feas)[np.argmax(self.evaluated.accuracy[feas])])


class Searcher(ABC):
    """Base class: parameters in ``__init__`` (scikit-learn style), ``run(problem, budget)`` does the work."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameters (what ``get_params`` returns and ``--searcher-param`` sets)."""
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    @abstractmethod
    def _search(self, run: Run, progress: bool) -> dict[str, Any]:
        """Spend the run's budget; return notes for the result."""

    def run(self, problem: Problem, budget: int, progress: bool = False) -> SearchResult:
        """Search ``problem`` with ``budget`` evaluated candidates."""
        log = Run(problem, budget)
        t0 = time.perf_counter()
        notes = self._search(log, progress) or {}
        return SearchResult(
            self.name,
            self.seed,
            self.get_params(),
            log.evaluated(),
            time.perf_counter() - t0,
            log.eval_seconds,
            log.budget,
            notes,
        )


def feasible_samples(problem: Problem, make: Any, n: int, max_tries: int) -> tuple[np.ndarray, int]:
    """Draw n candidates from ``make(k)`` and re-draw the infeasible ones, at most ``max_tries`` rounds,
    in batches (hardware cost is free to check). Returns the rows (infeasible leftovers kept, so the
    count is always n) and how many were still infeasible."""
    genes = make(n)
    _, _, viol = problem.cost(genes)
    bad = np.flatnonzero(viol > 0)
    for _ in range(max_tries):
        if not len(bad):
            break
        redo = make(len(bad))
        _, _, v = problem.cost(redo)
        ok = v <= 0
        genes[bad[ok]] = redo[ok]
        bad = bad[~ok]
    return genes, len(bad)
