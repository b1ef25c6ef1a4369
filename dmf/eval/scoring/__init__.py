"""Scoring images: feature networks, metrics with float64 streaming states, and the scorer that feeds them."""
