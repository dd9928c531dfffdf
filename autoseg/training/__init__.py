"""Training built from parts: config, splits, data, augmentation, losses, loop, checkpoints."""
