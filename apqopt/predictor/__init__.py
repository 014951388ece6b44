"""Accuracy predictors (APQ §3.2): full-precision, transferred quantization-aware, and metrics."""

from apqopt.predictor.estimator import AccuracyPredictor
from apqopt.predictor.metrics import pairwise_accuracy, ranking_report

__all__ = ["AccuracyPredictor", "pairwise_accuracy", "ranking_report"]
