"""Gaussian-weighted sliding-window inference with test-time mirroring.

Works on a (C, Z, Y, X) volume for both 3D networks (patch (pz, py, px)) and 2D networks (patch (py, px): the
window is (1, py, px) and the slice axis is squeezed before the network). Tiles are run ``tile_batch`` at a time
and added into one output accumulator, so memory holds the output plus at most one batch of tiles' logits.

The Gaussian is a product of one Gaussian per axis and the tiles are a Cartesian product of starts per axis, so the
sum of the weights over all tiles is a product of per-axis sums too: the final normalisation divides by three short
vectors instead of a weight volume the size of the image (one image's worth of memory less at the peak).
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..core.tiling import window_starts


def _gaussian_1d(p: int, sigma_scale: float) -> np.ndarray:
    """One axis of the importance map, 1 at its peak; at the border (4 sigma) it is exp(-8), never zero."""
    x = np.arange(p) - (p - 1) / 2
    g = np.exp(-0.5 * (x / max(p * sigma_scale, 1e-6)) ** 2)
    return g / g.max()


@lru_cache(maxsize=8)
def _gaussian_np(patch_size: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    g = np.ones((), dtype=np.float64)
    for p in patch_size:
        g = np.multiply.outer(g, _gaussian_1d(p, sigma_scale))
    return g.astype(np.float32)


def gaussian_importance(patch_size, sigma_scale: float = 1 / 8) -> torch.Tensor:
    """Weights that trust the centre of a tile more than its borders (sigma = patch / 8): the outer product of
    one Gaussian per axis."""
    return torch.from_numpy(_gaussian_np(tuple(int(p) for p in patch_size), sigma_scale))


def summed_weights(size: int, window: int, starts: list[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Sum over the tiles' starts along one axis of that axis's Gaussian (a window of 1, the slice axis of a 2D
    network, has weight 1): the weight volume of a Cartesian grid of tiles is the outer product of these."""
    g = _gaussian_1d(window, sigma_scale) if window > 1 else np.ones(1)
    w = np.zeros(size, dtype=np.float64)
    for s in starts:
        w[s:s + window] += g
    return w


def mirror_combinations(axes: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


@torch.inference_mode()
def sliding_window_logits(net: torch.nn.Module, data: torch.Tensor, patch_size, num_classes: int,
                          step: float = 0.5, mirror: bool = True, tile_batch: int = 4,
                          device: torch.device | str = "cpu", autocast: torch.dtype | None = None) -> torch.Tensor:
    """Return averaged logits (K, Z, Y, X) on the CPU for a (C, Z, Y, X) float tensor; the network runs under
    ``autocast`` (a dtype) when given, and its outputs are summed in fp32."""
    device = torch.device(device)
    is2d = len(patch_size) == 2
    window = (1, *patch_size) if is2d else tuple(patch_size)
    spatial = data.shape[1:]
    pad = [max(w - s, 0) for w, s in zip(window, spatial)]
    if any(pad):
        pads = []
        for p in reversed(pad):
            pads += [p // 2, p - p // 2]
        data = F.pad(data, pads)
    padded = data.shape[1:]
    starts = [window_starts(s, w, step) for s, w in zip(padded, window)]
    tiles = list(itertools.product(*starts))
    gauss = gaussian_importance(patch_size).to(device)
    acc = torch.zeros((num_classes, *padded), dtype=torch.float32, device=device)
    # network input axes: (B, C, *patch); mirror the spatial axes of the network input
    net_axes = tuple(range(2, 2 + len(patch_size)))
    combos = mirror_combinations(net_axes) if mirror else [()]
    data_dev = data.to(device)
    gauss_w = gauss if not is2d else gauss[None]
    for i in range(0, len(tiles), tile_batch):
        chunk = tiles[i:i + tile_batch]
        sls = [tuple(slice(s, s + w) for s, w in zip(t, window)) for t in chunk]
        x = torch.stack([data_dev[(slice(None),) + sl] for sl in sls])
        if is2d:
            x = x[:, :, 0]
        out = None
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            for axes in combos:
                xi = torch.flip(x, axes) if axes else x
                yi = net(xi)
                yi = torch.flip(yi, axes) if axes else yi
                out = yi.float() if out is None else out + yi.float()
        out = out / len(combos)
        if is2d:
            out = out[:, :, None]
        for o, sl in zip(out, sls):
            acc[(slice(None),) + sl] += o * gauss_w
    for axis, (size, w, st) in enumerate(zip(padded, window, starts)):  # in place, one axis at a time
        shape = [1] * (len(padded) + 1)
        shape[axis + 1] = size
        acc /= torch.from_numpy(summed_weights(size, w, st).astype(np.float32)).to(device).view(shape)
    if any(pad):
        acc = acc[(slice(None),) + tuple(slice(p // 2, p // 2 + s) for p, s in zip(pad, spatial))]
    return acc.cpu()
