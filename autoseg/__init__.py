"""autoseg: self-configuring medical image segmentation in the nnU-Net tradition."""

__version__ = "0.1.0"

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that `import autoseg` (and the CLI's start-up) does not load torch
    if name == "Predictor":
        from .inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'autoseg' has no attribute {name!r}")
