"""Training, grouped by what each module is (one level of modules, so relative imports stay one level deep):

- fold orchestration: ``fold`` (``train_fold``, the entry: the lock, the resume decision, rank 0 deciding for a
  torchrun group, the final checkpoint and validation; read top-down, ``train_fold -> _train -> _fit -> loop.fit``),
  ``setup`` (``FoldSetup``: what a fold reads, loaded once by the API), ``splits`` (patient-grouped folds),
  ``validation`` (the held-out cases at full resolution), ``interrupt`` (SIGTERM/Ctrl-C end training cleanly;
  with core's fold lock and fault hooks, it makes training safe to stop).
- the fit loop: ``loop`` (``fit``, ``LoopState``, ``Callback``), ``schedule`` (``LRSchedule``: epochs or the
  budget clock), ``callbacks`` (log line, log.jsonl, progress plot, checkpoints, CPU threads).
- the parts the loop drives: ``parts`` (seeded network, optimiser, ``Stepper``, loss, metric and data streams, each
  built from the fold's setup).
- data and augmentation: ``data`` (patch sampling, the loader), ``augmentation`` (``AUGMENTATIONS``).
- losses and metrics: ``losses`` (``LOSSES``, deep supervision), ``pseudo_dice`` (the per-epoch metric).
- distributed: ``distributed`` (``Sync``/``DDPSync``, the torchrun environment, the process group, ``--num-gpus``).
- settings and variants: ``config`` (``TrainConfig``: the numbers and their checks), ``trainers`` (``TRAINERS``).
- for the planner: ``step_timing`` (the step timer ``api.plan`` hands to the budget planner).
"""
