"""The checkpoint format, kept with the networks: a checkpoint is a dict of state dicts and plain values
(``network_weights``, ``architecture`` = {network_class_name, arch_kwargs}, ``epoch``, the optimiser's state, ...),
so ``torch.load(..., weights_only=True)`` reads it and any stage can rebuild the network from it alone."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes
from .catalog import build_network


def save_checkpoint(state: dict, path: Path, before_rename: Callable[[], None] | None = None) -> None:
    """Write ``state`` to a temporary file beside ``path`` and rename it (``before_rename`` runs in between: the
    training's fault-injection point for the kill drills)."""
    def _w(tmp: str) -> None:
        torch.save(state, tmp)
        if before_rename is not None:
            before_rename()

    atomic_write_bytes(path, _w)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    if not Path(path).is_file():
        raise AutosegError(f"{path}: checkpoint not found; train this fold first")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise AutosegError(f"{path}: cannot be loaded as an autoseg checkpoint ({e})") from None
    if not isinstance(ck, dict) or "network_weights" not in ck or "architecture" not in ck:
        raise AutosegError(f"{path}: not an autoseg checkpoint (no network_weights/architecture)")
    return ck


def network_from_checkpoint(ckpt: dict, device: torch.device) -> torch.nn.Module:
    """The network a checkpoint describes, with its weights, in evaluation mode and without deep supervision."""
    try:
        arch = ckpt["architecture"]
        net = build_network(arch["network_class_name"], dict(arch["arch_kwargs"]))
        net.load_state_dict(ckpt["network_weights"])
    except AutosegError as e:  # the typed network arguments name the bad key
        raise AutosegError(f"the checkpoint's network cannot be built: {e}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # unknown or wrong architecture keys
        raise AutosegError(f"the checkpoint's network cannot be built ({type(e).__name__}: {str(e)[:200]}); "
                           "it was not written by this autoseg, or its plans were edited") from None
    net.set_deep_supervision(False)
    return net.to(device).eval()


def load_matching_weights(net: torch.nn.Module, path: Path) -> tuple[list[str], list[str]]:
    """Copy the weights of ``path`` into ``net`` where a layer's name and shape match (an encoder trained on another
    dataset, a head with another class count is skipped); the rest keeps its initialisation.
    Returns (loaded, skipped) parameter names, skipped with the reason."""
    src = load_checkpoint(path)["network_weights"]
    own = net.state_dict()
    loaded, skipped = [], []
    for name, value in own.items():
        other = src.get(name)
        if other is None:
            skipped.append(f"{name} (not in {Path(path).name})")
        elif tuple(other.shape) != tuple(value.shape):
            skipped.append(f"{name} (shape {tuple(other.shape)} there, {tuple(value.shape)} here)")
        else:
            own[name] = other.to(value.dtype)
            loaded.append(name)
    if not loaded:
        raise AutosegError(f"{path}: no layer matches this network by name and shape; is it an autoseg checkpoint "
                           "of the same architecture?")
    net.load_state_dict(own)
    return loaded, skipped
