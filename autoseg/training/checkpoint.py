"""Checkpoints hold state dicts and plain values only, so ``torch.load(..., weights_only=True)`` reads them."""
from __future__ import annotations

from pathlib import Path

import torch

from ..utils import AutosegError, atomic_write_bytes


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write_bytes(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    if not Path(path).is_file():
        raise AutosegError(f"{path}: checkpoint not found; train this fold first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise AutosegError(f"{path}: cannot be loaded as an autoseg checkpoint ({e})") from None
