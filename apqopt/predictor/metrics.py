"""Ranking metrics for predictors: what matters in search is the order of candidates, not the values.

Pairwise ranking accuracy (OFA/APQ): the fraction of pairs with different true accuracy that the
prediction orders the same way; without ties it equals (1 + Kendall tau) / 2.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from apqopt.errors import ConfigError


def pairwise_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of pairs (with different true values) that the prediction orders correctly."""
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ConfigError(f"y_true and y_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    i, j = np.triu_indices(len(t), k=1)
    dt, dp = np.sign(t[i] - t[j]), np.sign(p[i] - p[j])
    valid = dt != 0
    if not valid.any():
        return float("nan")
    return float(np.mean(dt[valid] == dp[valid]))


def ranking_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Pairwise accuracy, Kendall tau, Spearman rho, RMSE and MAE (accuracies as fractions)."""
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return {
        "pairwise_accuracy": pairwise_accuracy(t, p),
        "kendall_tau": float(stats.kendalltau(t, p).statistic),
        "spearman_rho": float(stats.spearmanr(t, p).statistic),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "mae": float(np.mean(np.abs(t - p))),
        "n": len(t),
    }


def interval_coverage(y: np.ndarray, mean: np.ndarray, std: np.ndarray, nominal: float = 0.8) -> float:
    """Share of ``y`` inside the central ``nominal`` normal interval ``mean ± z * std``: what an honest
    uncertainty's intervals should make equal to ``nominal`` on data the model was not fitted on."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + nominal / 2)
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(mean)) <= z * np.asarray(std)))
