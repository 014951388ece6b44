"""The one Pareto-front function: which rows of an objective matrix no other row dominates.

Why one: the recorder (which candidates a large run stores), verification (which candidates to
measure) and the dashboard (which points to draw as the front) must agree on the same set.
"""

from __future__ import annotations

import numpy as np


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows of ``F`` (minimisation, one column per objective) that no other row
    dominates. Exact duplicates of a front point are kept once (the first). Two objectives take an
    O(n log n) sweep; more take pymoo's non-dominated sorting."""
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"objective matrix must be 2-D, got shape {F.shape}")
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if F.shape[1] == 1:
        return np.array([int(np.argmin(F[:, 0]))], dtype=np.int64)
    if F.shape[1] == 2:  # sort by the second objective, keep each strict improvement in the first
        order = np.lexsort((np.arange(n), F[:, 0], F[:, 1]))
        best = np.minimum.accumulate(F[order, 0])
        new = np.r_[True, F[order[1:], 0] < best[:-1]]
        return np.sort(order[new])
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    front = np.asarray(NonDominatedSorting().do(F, only_non_dominated_front=True), dtype=np.int64)
    _, first = np.unique(F[front], axis=0, return_index=True)  # one row per distinct point
    return np.sort(front[first])


def spread_front(accuracy: np.ndarray, latency: np.ndarray, feasible: np.ndarray, k: int) -> np.ndarray:
    """Up to k feasible non-dominated points (accuracy up, latency down), spread evenly along latency:
    the candidates worth measuring, so a *measured* front exists and not only its best point."""
    idx = np.flatnonzero(feasible)
    if not len(idx) or k <= 0:
        return np.zeros(0, dtype=np.int64)
    F = np.column_stack([-np.asarray(accuracy)[idx], np.asarray(latency)[idx]])
    front = idx[non_dominated(F)]
    front = front[np.argsort(np.asarray(latency)[front], kind="stable")]
    if len(front) <= k:
        return front
    return front[np.linspace(0, len(front) - 1, k).round().astype(int)]
