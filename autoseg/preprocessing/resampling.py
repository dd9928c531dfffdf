"""Resampling of images, label maps and probabilities between grids.

Images use cubic splines; label maps are resampled as one-hot masks with linear interpolation and re-labelled by
argmax (avoids the jagged, shrinking structures of nearest-neighbour); probabilities are resampled, never labels.
For anisotropic data the coarse axis (axis 0 after transposition) is handled separately with its own order
(nearest by default), so that thick slices are not smeared into each other.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform


def _resample_nd(x: np.ndarray, new_shape, order: int) -> np.ndarray:
    """Resample one spatial array with pixel-centre alignment (as for physical resampling)."""
    old = np.array(x.shape, float)
    new = np.array(new_shape, float)
    if tuple(x.shape) == tuple(int(v) for v in new_shape):
        return x.astype(np.float32, copy=True)
    scale = old / new
    offset = 0.5 * scale - 0.5
    return affine_transform(x.astype(np.float32, copy=False), scale, offset=offset,
                            output_shape=tuple(int(v) for v in new_shape), order=order, mode="nearest",
                            prefilter=order > 1)


def _resample_axis0(x: np.ndarray, new_len: int, order: int) -> np.ndarray:
    old_len = x.shape[0]
    if old_len == new_len:
        return x
    pos = (np.arange(new_len) + 0.5) * old_len / new_len - 0.5
    if order == 0:
        idx = np.clip(np.round(pos).astype(int), 0, old_len - 1)
        return x[idx]
    lo = np.clip(np.floor(pos).astype(int), 0, old_len - 1)
    hi = np.clip(lo + 1, 0, old_len - 1)
    w = np.clip(pos - lo, 0, 1).reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
    return x[lo] * (1 - w) + x[hi] * w


def resample_array(x: np.ndarray, new_shape, order: int, separate_z: bool = False, order_z: int = 0) -> np.ndarray:
    """Resample a single spatial array (Z, Y, X) or (Y, X) to ``new_shape``."""
    new_shape = tuple(int(v) for v in new_shape)
    if not separate_z or x.ndim == 2:
        return _resample_nd(x, new_shape, order)
    if x.shape[1:] != new_shape[1:]:
        x = np.stack([_resample_nd(x[z], new_shape[1:], order) for z in range(x.shape[0])])
    else:
        x = x.astype(np.float32, copy=True)
    return _resample_axis0(x, new_shape[0], order_z)


def resample_data(data: np.ndarray, new_shape, order: int = 3, separate_z: bool = False,
                  order_z: int = 0) -> np.ndarray:
    """(C, Z, Y, X) float image -> (C, *new_shape)."""
    return np.stack([resample_array(c, new_shape, order, separate_z, order_z) for c in data]).astype(np.float32)


def resample_seg(seg: np.ndarray, new_shape, labels, order: int = 1, separate_z: bool = False,
                 order_z: int = 0) -> np.ndarray:
    """(Z, Y, X) label map -> new_shape via one-hot interpolation and argmax."""
    if tuple(seg.shape) == tuple(int(v) for v in new_shape):
        return seg.copy()
    labels = sorted(set(int(v) for v in labels) | {0})
    probs = np.stack([resample_array((seg == v).astype(np.float32), new_shape, order, separate_z, order_z)
                      for v in labels])
    return np.asarray(labels, dtype=seg.dtype)[np.argmax(probs, 0)]


def resample_probabilities(probs: np.ndarray, new_shape, order: int = 1, separate_z: bool = False,
                           order_z: int = 0, normalise: bool = True) -> np.ndarray:
    """(K, Z, Y, X) class probabilities -> new_shape; renormalised so that they still sum to one (not for
    independent sigmoid region probabilities, ``normalise=False``, which are only clipped to [0, 1])."""
    out = resample_data(probs, new_shape, order, separate_z, order_z)
    np.clip(out, 0, None if normalise else 1, out=out)
    if not normalise:
        return out
    s = out.sum(0, keepdims=True)
    s[s == 0] = 1
    return out / s


def new_shape_for(shape, spacing, target_spacing) -> list[int]:
    return [max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target_spacing)]
