"""Metrics over extracted features: Fréchet distances, Inception Score, precision/recall, class accuracy."""
from dmf.eval.metrics.accuracy import ClassAccuracy
from dmf.eval.metrics.base import Metric, MetricState
from dmf.eval.metrics.frechet import Frechet
from dmf.eval.metrics.inception_score import InceptionScore
from dmf.eval.metrics.precision_recall import PrecisionRecall, precision_recall

__all__ = ["ClassAccuracy", "Frechet", "InceptionScore", "Metric", "MetricState", "PrecisionRecall",
           "precision_recall"]
