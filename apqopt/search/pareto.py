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


def budget_picks(accuracy: np.ndarray, cost: np.ndarray, feasible: np.ndarray, k: int) -> np.ndarray:
    """What a user would deploy at k cost budgets along a front: for budgets ``lo + (hi - lo) * i / k``
    (i = 1..k; ``lo`` the cheapest feasible cost, ``hi`` the dearest point of the feasible front, i.e. the
    most accurate one), the best predicted feasible candidate within each; each row once, by cost.

    Why not points spread evenly along the front: the front's cheapest end is where the predictor is most
    wrong and where nobody deploys, and a spread always measures it (one pick per run measured only the
    cheapest network). Here the smallest budget lies above the cheapest cost unless the front is one point,
    and one pick is the most accurate feasible candidate."""
    acc, cost = np.asarray(accuracy, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    idx = np.flatnonzero(feasible)
    if not len(idx) or k <= 0:
        return np.zeros(0, dtype=np.int64)
    front = idx[non_dominated(np.column_stack([-acc[idx], cost[idx]]))]
    lo, hi = float(cost[idx].min()), float(cost[front].max())
    picks: list[int] = []
    for i in range(1, k + 1):
        within = front[cost[front] <= lo + (hi - lo) * i / k + 1e-12 * max(1.0, abs(hi))]
        best = int(within[np.argmax(acc[within])])  # the front is sorted by row; ties keep the first
        if best not in picks:
            picks.append(best)
    return np.array(sorted(picks, key=lambda r: (cost[r], r)), dtype=np.int64)
