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


def autocast_dtype(device: torch.device, precision: str = "fp32") -> torch.dtype | None:
    """The autocast type of training steps and inference passes: on CUDA bf16 (fp16 where the GPU lacks bf16), as
    nnU-Net does; on a CPU bf16 only when the plan's ``precision`` says the timed steps ran faster in it (a CPU with
    native bf16 arithmetic, e.g. AVX-512 BF16 or AMX; elsewhere bf16 is emulated and many times slower)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and precision == "bf16" else None


def plan_precision(cfg) -> str:
    """A configuration's precision on a CPU: what its budget record chose when the plan was timed on a CPU; fp32
    for plans made without a budget or timed on a GPU (whose bf16 says nothing about this CPU)."""
    b = getattr(cfg, "budget", None)
    return b.precision if b is not None and b.device.startswith("cpu") else "fp32"
