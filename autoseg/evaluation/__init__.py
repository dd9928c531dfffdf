"""Metrics and evaluation of prediction folders."""
