"""Crop, normalise, resample: the same code path for training cases and for images at inference."""
