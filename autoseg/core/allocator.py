"""Keeping freed memory for reuse instead of handing it back to the system after every training step.

glibc's malloc serves a block larger than its mmap threshold with a mapping of its own and unmaps it when freed,
and gives the free memory at the top of its heap back to the system once it exceeds its trim threshold (both
thresholds follow the blocks it has seen, up to 32 MiB and 64 MiB). A training step on a CPU allocates hundreds of
megabytes of activations and gradients and frees them all at its end, so every step the kernel maps those pages
again and zeroes them on first touch. On HC18's 2D step (3 x 192 x 288, 16 features, bf16) that is about 80,000
page faults a second and a tenth of the CPU time spent in the kernel, and the step time wanders with it: 0.35-0.43 s
a step, against 0.31-0.34 s with the memory kept (benchmarks/freed_memory.py; benchmarks/README.md, issue 25).

``keep_freed_memory`` fixes the mmap threshold at 32 MiB (the most glibc accepts) and the trim threshold at 2 GiB,
so that freed activations are reused by the next step. The process's peak memory is what it was; it is only not
returned between steps. Training, the plan's step timing and prediction on a CPU call it, so the plan times the
steps training runs. The data workers, forked afterwards, inherit it. Elsewhere than glibc (macOS, musl) nothing
changes.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (half its 64 MiB heap size on 64-bit)
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed memory in this process (and children forked later) for reuse; True where glibc took both
    settings. Called again, it does nothing more."""
    global _kept
    if _kept is None:
        _kept = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL("libc.so.6").mallopt
                _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                pass
    return _kept
