"""Training, built from parts.

``setup`` (what a fold reads, loaded once by the API) -> ``parts`` (seeded network, loss, metric, optimiser step,
data streams from ``data``/``augmentation``/``losses``) + ``schedule`` (epochs or the budget clock) + ``callbacks``
(log line, log.jsonl, progress plot, checkpoints) -> ``loop.fit``. ``fold`` runs one fold end to end (lock,
resume, final checkpoint, ``validation``); ``distributed`` holds what DDP needs; ``config`` the numbers and their
checks; ``splits`` the patient-grouped folds; ``interrupt`` (with core's fold lock and fault hooks) makes it safe
to stop.
"""
