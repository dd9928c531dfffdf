"""Public dataset layouts -> the nnU-Net v2 raw layout that autoseg plans from: ``autoseg convert KIND RAW --out``."""
from __future__ import annotations

from pathlib import Path

from ...core.errors import AutosegError
from . import acdc, camus, msd
from .common import write_conversion

CONVERTERS = {"acdc": acdc.build, "camus": camus.build, "msd": msd.build}


def convert_dataset(kind: str, raw_dir: str | Path, out: str | Path) -> Path:
    """Convert RAW_DIR (never modified) into a new dataset folder ``out``, written atomically."""
    if kind not in CONVERTERS:
        raise AutosegError(f"unknown dataset kind {kind!r}; known: {sorted(CONVERTERS)}")
    return write_conversion(kind, raw_dir, out, CONVERTERS[kind])


__all__ = ["convert_dataset", "CONVERTERS"]
