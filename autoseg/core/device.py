"""Choosing the torch device from a name; used by planning (timing), training and inference alike."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import AutosegError


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


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (host RAM for the CPU: MemAvailable, lowered to a container's
    cgroup limit where one is set); None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        free = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    cgroup = Path("/sys/fs/cgroup")
    try:  # cgroup v2: a container's limit is not in /proc/meminfo
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, max(int(limit) - int((cgroup / "memory.current").read_text()), 0))
    except (OSError, ValueError):
        pass
    return free
