"""Sliding-window inference, test-time mirroring, fold ensembling and export to the input's geometry."""
