"""A batch of evaluated candidates: what a search produces and a recorded study gives back.

Why its own module: searchers make it (:mod:`apqopt.search`), the record codec reads it back from
trials (:mod:`apqopt.record`), and neither may import the other's package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apqopt.errors import ConfigError
from apqopt.hardware.lut import COSTS


@dataclass
class Evaluation:
    """A batch of evaluated candidates (rows aligned)."""

    genes: np.ndarray
    accuracy: np.ndarray
    latency: np.ndarray
    energy: np.ndarray
    violation: np.ndarray  # sum of positive constraint excesses (0 = feasible)

    @property
    def feasible(self) -> np.ndarray:
        return self.violation <= 0

    def __len__(self) -> int:
        return len(self.accuracy)

    def cost(self, name: str) -> np.ndarray:
        if name == "latency":
            return self.latency
        if name == "energy":
            return self.energy
        raise ConfigError(f"unknown cost '{name}'; choose from {list(COSTS)}")

    def take(self, rows: np.ndarray | slice) -> Evaluation:
        """The rows ``rows`` (indices, mask or slice) as a new Evaluation."""
        return Evaluation(*(getattr(self, f)[rows] for f in _FIELDS))

    @classmethod
    def concat(cls, parts: list[Evaluation]) -> Evaluation:
        if not parts:
            z = np.zeros(0)
            return cls(np.zeros((0, 0), dtype=np.int64), z, z, z, z)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("genes", "accuracy", "latency", "energy", "violation")
