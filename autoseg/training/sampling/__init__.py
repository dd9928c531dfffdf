"""Training data: ``patches`` samples patches (foreground-oversampled) and loads them in worker processes;
``augmentation`` holds the named augmentation pipelines (``AUGMENTATIONS``)."""
