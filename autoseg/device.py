"""Choosing the torch device from a name; used by planning (timing), training and inference alike."""
from __future__ import annotations

import torch

from .utils import AutosegError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is the GPU when torch sees one, else the CPU; asking for CUDA without one is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AutosegError("--device cuda was asked for, but torch sees no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AutosegError(f"--device {name!r} is not a device torch knows; use auto, cpu, cuda or cuda:N") from None
