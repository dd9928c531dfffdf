"""Crop to the nonzero region: background that is exactly zero in every channel carries no information."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Voxels that are nonzero in any channel, with holes filled (dark structures inside the body stay in)."""
    mask = np.any(data != 0, axis=0)
    if mask.shape[0] == 1:  # a single slice: fill in 2D (in 3D every voxel would touch the z border)
        return binary_fill_holes(mask[0])[None]
    return binary_fill_holes(mask)


def bbox_of(mask: np.ndarray) -> list[list[int]]:
    """[[start, stop), ...] per axis; the whole array when the mask is empty."""
    if not mask.any():
        return [[0, s] for s in mask.shape]
    box = []
    for ax in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        box.append([int(nz[0]), int(nz[-1]) + 1])
    return box


def crop_to_nonzero(data: np.ndarray, seg: np.ndarray | None = None):
    """Return (cropped data, cropped seg or None, bbox, mask inside the bbox). Inputs are not modified; the
    cropped data is a view of ``data`` (no second copy of a large image), so callers must not write into it."""
    mask = nonzero_mask(data)
    box = bbox_of(mask)
    sl = tuple(slice(a, b) for a, b in box)
    data_c = data[(slice(None),) + sl]
    seg_c = seg[sl].copy() if seg is not None else None
    return data_c, seg_c, box, mask[sl]


def uncrop(arr: np.ndarray, bbox: list[list[int]], full_shape, fill=0) -> np.ndarray:
    """Put a cropped (…, Z, Y, X) array back into an array of the full spatial shape."""
    lead = arr.shape[: arr.ndim - len(full_shape)]
    out = np.full(tuple(lead) + tuple(full_shape), fill, dtype=arr.dtype)
    out[(Ellipsis,) + tuple(slice(a, b) for a, b in bbox)] = arr
    return out
