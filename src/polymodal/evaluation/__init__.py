"""Evaluation: inference over datasets, metrics, plots, reports."""
