"""Evaluation: feature networks, metrics, reference statistics, distributed generation, report; see docs/eval.md."""
