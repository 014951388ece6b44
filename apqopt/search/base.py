"""The searcher interface and registry: searchers plug in like Optuna samplers.

A searcher knows nothing of networks or hardware: it sees a :class:`Problem` (genes in, objectives
and constraint violations out) and a budget, and returns a :class:`SearchResult`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from apqopt.search.problem import Evaluation, Problem


@dataclass
class SearchResult:
    searcher: str
    seed: int
    params: dict[str, Any]
    evaluated: Evaluation
    wall_s: float
    eval_s: float
    notes: dict[str, Any] = field(default_factory=dict)

    def best(self) -> int:
        """Index of the most accurate feasible candidate (-1 if none is feasible)."""
        feas = self.evaluated.feasible
        if not feas.any():
            return -1
        return int(np.flatnonzero(feas)[np.argmax(self.evaluated.accuracy[feas])])


class Searcher(ABC):
    """Base class: parameters in ``__init__`` (scikit-learn style), ``run(problem)`` does the work."""

    name: ClassVar[str]

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def _search(self, problem: Problem, progress: bool) -> dict[str, Any]:
        """Spend the problem's budget; return notes for the result."""

    def run(self, problem: Problem, progress: bool = False) -> SearchResult:
        t0 = time.perf_counter()
        notes = self._search(problem, progress) or {}
        return SearchResult(
            self.name,
            self.seed,
            self.get_params(),
            problem.all_evaluated(),
            time.perf_counter() - t0,
            problem.eval_seconds,
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


_REGISTRY: dict[str, type[Searcher]] = {}


def register(cls: type[Searcher]) -> type[Searcher]:
    _REGISTRY[cls.name] = cls
    return cls


def make_searcher(name: str, **params: Any) -> Searcher:
    """A searcher by name, e.g. ``make_searcher("evolution", seed=1)``."""
    from apqopt.search import evolution, haq, ohq, optuna_search, pymoo_search, random_search  # noqa: F401  (registration)

    if name not in _REGISTRY:
        raise ValueError(f"unknown searcher '{name}'; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**params)


def searcher_names() -> list[str]:
    from apqopt.search import evolution, haq, ohq, optuna_search, pymoo_search, random_search  # noqa: F401

    return sorted(_REGISTRY)
