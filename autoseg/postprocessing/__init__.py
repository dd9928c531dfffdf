"""Connected-component postprocessing, applied only where cross-validation showed it helps."""
