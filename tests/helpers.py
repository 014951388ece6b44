"""Helpers shared by test modules (test modules never import each other)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apqopt import get_space
from apqopt.hardware.lut import load_shipped
from apqopt.search import make_searcher
from apqopt.search.problem import Problem
from apqopt.studies import record

SP = get_space("fmnist")
LUT = load_shipped("fmnist")
W = np.random.default_rng(0).normal(size=SP.encoding_width)


def capacity(genes: np.ndarray) -> np.ndarray:
    """A fixed, structured stand-in for a predictor (bigger and wider-bit nets score higher), so that
    searchers have something to find; the measured predictor is tested in test_predictor.py."""
    enc = SP.encode(genes)
    return (
        0.8
        + 0.002 * enc[:, : SP.arch_width] @ np.abs(W[: SP.arch_width])
        + 0.0005 * enc[:, SP.arch_width :] @ W[SP.arch_width :]
    )


def problem(limit: float = 0.6) -> Problem:
    return Problem(SP, capacity, LUT, constraints={"latency": limit})


APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def recorded_storage(path: Path) -> str:
    """A journal storage holding four real runs (random and evolution, two seeds each, 120 evaluations)."""
    url = str(path)
    for name in ("random", "evolution"):
        for seed in (0, 1):
            p = problem()
            record(
                make_searcher(name, seed=seed).run(p, 120),
                p,
                url,
                f"{name}-s{seed}",
                attrs={"hypervolume": 0.01 * (seed + 1)},
            )
    return url
