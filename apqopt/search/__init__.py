"""The searchers, listed here as Optuna lists its samplers (no registry, no import cycle).

``make_searcher("evolution", seed=1)`` builds one by name; ``SEARCHERS`` maps each name to its class.
"""

from __future__ import annotations

from typing import Any

from apqopt.errors import ConfigError
from apqopt.search.base import Run, Searcher, SearchResult
from apqopt.search.evolution import Evolution
from apqopt.search.haq import HAQ
from apqopt.search.joint_ilp import JointILP
from apqopt.search.ohq import OHQ
from apqopt.search.optuna_search import OptunaNSGA2, OptunaRandom, OptunaRandomRaw, OptunaTPE
from apqopt.search.problem import BudgetExhaustedError, Evaluation, InfeasibleError, Problem
from apqopt.search.pymoo_search import PymooNSGA2, PymooProblem, integer_operators
from apqopt.search.random_search import RandomSearch

SEARCHERS: dict[str, type[Searcher]] = {
    cls.name: cls
    for cls in (
        RandomSearch,
        Evolution,
        JointILP,
        PymooNSGA2,
        OptunaNSGA2,
        OptunaTPE,
        OptunaRandom,
        OptunaRandomRaw,
        HAQ,
        OHQ,
    )
}


def searcher_names() -> list[str]:
    return sorted(SEARCHERS)


def searcher_class(name: str) -> type[Searcher]:
    try:
        return SEARCHERS[name]
    except KeyError:
        raise ConfigError(f"unknown searcher '{name}'; known: {searcher_names()}") from None


def make_searcher(name: str, **params: Any) -> Searcher:
    """A searcher by name, e.g. ``make_searcher("evolution", seed=1)``; unknown parameters are named."""
    cls = searcher_class(name)
    unknown = sorted(set(params) - set(cls.param_names()))
    if unknown:
        raise ConfigError(f"searcher '{name}' has no parameter {unknown[0]!r}; it takes {cls.param_names()}")
    return cls(**params)


__all__ = [
    "HAQ",
    "OHQ",
    "SEARCHERS",
    "BudgetExhaustedError",
    "Evaluation",
    "Evolution",
    "InfeasibleError",
    "JointILP",
    "OptunaNSGA2",
    "OptunaRandom",
    "OptunaRandomRaw",
    "OptunaTPE",
    "Problem",
    "PymooNSGA2",
    "PymooProblem",
    "RandomSearch",
    "Run",
    "SearchResult",
    "Searcher",
    "integer_operators",
    "make_searcher",
    "searcher_class",
    "searcher_names",
]
