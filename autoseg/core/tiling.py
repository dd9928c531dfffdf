"""Where sliding-window tiles start: shared by inference (which runs them) and the budget planner (which counts
them to price the final validation), so neither needs the other."""
from __future__ import annotations

import numpy as np


def window_starts(size: int, patch: int, step: float) -> list[int]:
    """Evenly spaced tile starts covering [0, size) with overlap of at least (1 - step) * patch."""
    if size <= patch:
        return [0]
    n = int(np.ceil((size - patch) / (patch * step))) + 1
    # a window of 1 (the slice axis of a 2D network) would otherwise give ~2 starts per slice: each slice once
    return sorted({int(round(i * (size - patch) / (n - 1))) for i in range(n)})
