"""apqopt: hardware-aware joint search of architecture, channel pruning and mixed precision (APQ).

The main entry points, importable from here::

    from apqopt import Problem, load_problem, make_searcher, get_space, LUT, AccuracyPredictor

Heavy ones (torch, Optuna, pymoo behind them) load on first use, so ``import apqopt`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from apqopt.errors import ApqoptError
from apqopt.space import Block, Candidate, InvalidCandidateError, Layer, SearchSpace, Stage, get_space, space_names

_LAZY = {
    "Problem": "apqopt.search.problem",
    "ProblemSpec": "apqopt.problem_spec",
    "load_problem": "apqopt.problem_spec",
    "Evaluation": "apqopt.evaluation",
    "make_searcher": "apqopt.search",
    "searcher_names": "apqopt.search",
    "SEARCHERS": "apqopt.search",
    "LUT": "apqopt.hardware.lut",
    "AccuracyPredictor": "apqopt.predictor",
    "RecordCodec": "apqopt.record",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'apqopt' has no attribute {name!r}")


__all__ = [
    "LUT",
    "SEARCHERS",
    "AccuracyPredictor",
    "ApqoptError",
    "Block",
    "Candidate",
    "Evaluation",
    "InvalidCandidateError",
    "Layer",
    "Problem",
    "ProblemSpec",
    "RecordCodec",
    "SearchSpace",
    "Stage",
    "get_space",
    "load_problem",
    "make_searcher",
    "searcher_names",
    "space_names",
]
__version__ = "0.1.0"
