"""autoseg: self-configuring medical image segmentation in the nnU-Net tradition.

The house plan: layers, lowest first. A module imports from its own layer and the layers below it, never from above,
at the top of a file or inside a function alike, and no modules import each other in a circle
(tests/test_import_graph.py checks this on the source).

 1. ``core``: what every stage shares and nothing else knows about images: the error type, JSON and atomic files,
    the folder lock (``filelock``), process and signal handling, progress lines and tables, fault hooks for the
    drills, the device and CPU-share measures, record validation, the name registries for plugins.
 2. ``io``: reading and writing the data as nnU-Net lays it out (images with their geometry, dataset.json and its
    labels, the run folder's names) and the crop to the nonzero region, which the planner's fingerprint and the
    preprocessing both need.
 3. ``datasets``: converters of public datasets into that layout, and the phantom; they only write files.
 4. ``networks``: the U-Nets and their catalogue; they know nothing of plans, so the planner can size them.
 5. ``planner``: fingerprint, nnU-Net's rules, the plans record, the budget planner. It times training steps
    through a function ``api`` hands it, so it imports no training code.
 6. ``preprocessing``: resampling, normalisation, the preprocessed cases and the cascade's low-resolution input,
    all driven by a plan.
 7. ``evaluation``: metrics in mm, cardiac and other domain measures, reports; they read label maps only.
 8. ``postprocessing``: the largest-component decision and the ranking of configurations, from cross-validation
    scores (evaluation below them).
 9. ``sharing``: model zips and nnU-Net imports, written from checkpoints and plans, so inference can open them.
10. ``inference``: the one ``Predictor`` (folds, ensembles, zips, ONNX), the sliding window, ``autoseg predict``.
11. ``training``: one fold read top-down (``fold``), the fit loop (``fit``), patches and augmentation
    (``sampling``), losses and the pseudo-Dice (``objective``), torchrun (``distributed``); its validation predicts
    with inference, hence above it.
12. ``cluster``: the job graph for SLURM or a local pool; it runs `autoseg` commands and is handed the CLI's parser.
13. ``api``: one function per command, composing the layers; 14. ``cli``: parses arguments and calls ``api``.
The package root keeps only these public faces: ``cli``, ``api`` and this file (``autoseg.Predictor``).
"""

from .core.version import __version__

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `import autoseg` (and the CLI's start-up) does not load torch
    if name == "Predictor":
        from .inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'autoseg' has no attribute {name!r}")
