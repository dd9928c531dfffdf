"""Fingerprint extraction and planning (pure rules in heuristics.py)."""
