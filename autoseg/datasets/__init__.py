"""Datasets the package makes itself (the synthetic cardiac phantom)."""
