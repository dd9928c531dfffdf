"""autoseg: self-configuring medical image segmentation in the nnU-Net tradition."""

from .core.version import __version__

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `import autoseg` (and the CLI's start-up) does not load torch
    if name == "Predictor":
        from .inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'autoseg' has no attribute {name!r}")
