"""Resampling of images, label maps and probabilities between grids.

Images use cubic splines; label maps are resampled as one-hot masks with linear interpolation and re-labelled by
argmax (avoids the jagged, shrinking structures of nearest-neighbour); probabilities are resampled, never labels.
For anisotropic data the coarse axis is handled separately with its own order (nearest by default), so that thick
slices are not smeared into each other; which axis that is, and whether to, is decided per case from its spacing and
the target's (``planner.heuristics.separate_z_decision``, nnU-Net's rule), usually axis 0 after transposition.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform, spline_filter

SPLINE_PAD = 12  # edge padding before the spline prefilter, as scipy does for mode="nearest"


def _resample_nd(x: np.ndarray, new_shape, order: int, out: np.ndarray | None = None) -> np.ndarray:
    """Resample one spatial array with pixel-centre alignment (as for physical resampling).

    The spline prefilter runs in float32 on an edge-padded copy (scipy's own prefilter makes a float64 copy,
    twice the memory of the image), and the result goes straight into ``out`` when given."""
    new_shape = tuple(int(v) for v in new_shape)
    if out is None:
        out = np.empty(new_shape, np.float32)
    if tuple(x.shape) == new_shape:
        out[...] = x
        return out
    scale = np.array(x.shape, float) / np.array(new_shape, float)
    offset = 0.5 * scale - 0.5
    x = x.astype(np.float32, copy=False)
    if order > 1:
        x = np.pad(x, SPLINE_PAD, mode="edge")
        spline_filter(x, order, output=x, mode="nearest")
        offset = offset + SPLINE_PAD
    affine_transform(x, scale, offset=offset, output_shape=new_shape, output=out, order=order, mode="nearest",
                     prefilter=False)
    return out


def _resample_axis0(x: np.ndarray, new_len: int, order: int, out: np.ndarray | None = None) -> np.ndarray:
    """Along the (coarse) first axis only, one output slice at a time (no full-size temporaries)."""
    old_len = x.shape[0]
    if out is None:
        out = np.empty((new_len,) + x.shape[1:], np.float32)
    if old_len == new_len:
        out[...] = x
        return out
    pos = (np.arange(new_len) + 0.5) * old_len / new_len - 0.5
    if order == 0:
        idx = np.clip(np.round(pos).astype(int), 0, old_len - 1)
        for i, j in enumerate(idx):
            out[i] = x[j]
        return out
    lo = np.clip(np.floor(pos).astype(int), 0, old_len - 1)
    hi = np.clip(lo + 1, 0, old_len - 1)
    w = np.clip(pos - lo, 0, 1).astype(np.float32)
    for i in range(new_len):
        np.multiply(x[lo[i]], 1 - w[i], out=out[i])
        out[i] += x[hi[i]] * w[i]
    return out


def resample_array(x: np.ndarray, new_shape, order: int, separate_z: bool = False, order_z: int = 0,
                   out: np.ndarray | None = None, axis: int = 0) -> np.ndarray:
    """Resample a single spatial array (Z, Y, X) or (Y, X) to ``new_shape`` (into ``out`` when given); with
    ``separate_z``, ``axis`` is the coarse axis resampled on its own."""
    new_shape = tuple(int(v) for v in new_shape)
    if separate_z and x.ndim == 3 and axis != 0:  # the coarse axis first, then back in its place
        moved = (new_shape[axis],) + tuple(s for i, s in enumerate(new_shape) if i != axis)
        res = np.moveaxis(resample_array(np.moveaxis(x, axis, 0), moved, order, True, order_z), 0, axis)
        if out is None:
            return np.ascontiguousarray(res)
        out[...] = res
        return out
    if not separate_z or x.ndim == 2:
        return _resample_nd(x, new_shape, order, out)
    if x.shape[1:] != new_shape[1:]:
        same_z = x.shape[0] == new_shape[0]  # then the slices go straight into the output
        mid = (out if out is not None else np.empty(new_shape, np.float32)) if same_z else \
            np.empty((x.shape[0],) + new_shape[1:], np.float32)
        for z in range(x.shape[0]):
            _resample_nd(x[z], new_shape[1:], order, mid[z])
        if same_z:
            return mid
        x = mid
    return _resample_axis0(x, new_shape[0], order_z, out)


def resample_data(data: np.ndarray, new_shape, order: int = 3, separate_z: bool = False,
                  order_z: int = 0, axis: int = 0) -> np.ndarray:
    """(C, Z, Y, X) float image -> (C, *new_shape), one channel at a time into one output array."""
    out = np.empty((data.shape[0],) + tuple(int(v) for v in new_shape), np.float32)
    for c in range(data.shape[0]):
        resample_array(data[c], new_shape, order, separate_z, order_z, out[c], axis)
    return out


def resampled_argmax(channels, new_shape, order: int = 1, separate_z: bool = False,
                     order_z: int = 0, axis: int = 0) -> np.ndarray:
    """Index of the largest of the resampled channels (negative values count as 0; ties go to the first).

    Equal to ``argmax(resample(stack(channels)))`` while holding one resampled channel and the running maximum
    instead of all of them; ``channels`` may be a generator that makes each channel on demand."""
    best = idx = None
    cur = None
    for k, ch in enumerate(channels):
        cur = resample_array(ch, new_shape, order, separate_z, order_z, cur, axis)
        np.maximum(cur, 0, out=cur)
        if best is None:
            best, idx = cur.copy(), np.zeros(cur.shape, np.uint8 if k < 255 else np.int16)
            continue
        better = cur > best
        idx[better] = k
        np.maximum(best, cur, out=best)
    if idx is None:
        raise ValueError("no channels to take the argmax of")
    return idx


def resample_seg(seg: np.ndarray, new_shape, labels, order: int = 1, separate_z: bool = False,
                 order_z: int = 0, axis: int = 0) -> np.ndarray:
    """(Z, Y, X) label map -> new_shape via one-hot interpolation and argmax (one label's mask at a time)."""
    if tuple(seg.shape) == tuple(int(v) for v in new_shape):
        return seg.copy()
    labels = sorted(set(int(v) for v in labels) | {0})
    # boolean masks: the separate-z path casts them to float one slice at a time
    idx = resampled_argmax(((seg == v) for v in labels), new_shape, order, separate_z, order_z, axis)
    return np.asarray(labels, dtype=seg.dtype)[idx]


def resample_probabilities(probs: np.ndarray, new_shape, order: int = 1, separate_z: bool = False,
                           order_z: int = 0, normalise: bool = True, axis: int = 0) -> np.ndarray:
    """(K, Z, Y, X) class probabilities -> new_shape; renormalised so that they still sum to one (not for
    independent sigmoid region probabilities, ``normalise=False``, which are only clipped to [0, 1])."""
    out = resample_data(probs, new_shape, order, separate_z, order_z, axis)
    np.clip(out, 0, None if normalise else 1, out=out)
    if not normalise:
        return out
    s = out.sum(0, keepdims=True)
    s[s == 0] = 1
    out /= s
    return out


def new_shape_for(shape, spacing, target_spacing) -> list[int]:
    return [max(1, int(round(s * sp / t))) for s, sp, t in zip(shape, spacing, target_spacing)]


def case_resampling(current_spacing, new_spacing) -> dict:
    """Keyword arguments ``separate_z`` and ``axis`` for resampling one case from ``current_spacing`` to
    ``new_spacing``: decided per case, the current spacing looked at first (nnU-Net's rule)."""
    from ..planner.heuristics import separate_z_decision

    sep, axis = separate_z_decision(current_spacing, new_spacing)
    return {"separate_z": sep, "axis": axis or 0}
