"""Metrics over extracted features: Fréchet distances, Inception Score, precision/recall, class accuracy."""
from dmf.eval.scoring.metrics.accuracy import ClassAccuracy
from dmf.eval.scoring.metrics.base import Metric, MetricState
from dmf.eval.scoring.metrics.frechet import Frechet
from dmf.eval.scoring.metrics.inception_score import InceptionScore
from dmf.eval.scoring.metrics.precision_recall import PrecisionRecall, precision_recall

__all__ = ["ClassAccuracy", "Frechet", "InceptionScore", "Metric", "MetricState", "PrecisionRecall",
           "precision_recall"]
