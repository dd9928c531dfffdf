"""Resampling of images, label maps and probabilities between grids.

Images use cubic splines; label maps are resampled as one-hot masks with linear interpolation and re-labelled by
argmax (avoids the jagged, shrinking structures of nearest-neighbour); probabilities are resampled, never labels.
For anisotropic data the coarse axis is handled separately with its own order (nearest by default), so that thick
slices are not smeared into each other; which axis that is, and whether to, is decided per case from its spacing and
the target's (``planner.heuristics.separate_z_decision``, nnU-Net's rule), usually axis 0 after transposition.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform, spline_filter, spline_filter1d

SPLINE_PAD = 12  # edge padding before the spline prefilter, as scipy does for mode="nearest"
SEPARABLE_ORDERS = (1, 3)


def _resample_nd(x: np.ndarray, new_shape, order: int, out: np.ndarray | None = None) -> np.ndarray:
    """Resample one spatial array with pixel-centre alignment (as for physical resampling), into ``out`` when
    given. Linear and cubic resampling go axis by axis (``_resample_separable``); other orders through scipy."""
    new_shape = tuple(int(v) for v in new_shape)
    if out is None:
        out = np.empty(new_shape, np.float32)
    if tuple(x.shape) == new_shape:
        out[...] = x
        return out
    if order in SEPARABLE_ORDERS and x.ndim in (2, 3):
        return _resample_separable(x, new_shape, order, out)
    return _resample_scipy(x, new_shape, order, out)


def _resample_scipy(x: np.ndarray, new_shape: tuple, order: int, out: np.ndarray) -> np.ndarray:
    """scipy's spline resampling of the whole array (any order). The spline prefilter runs in float32 on an
    edge-padded copy (scipy's own prefilter makes a float64 copy, twice the memory of the image)."""
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


def _taps(old_len: int, new_len: int, order: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights (taps x new_len) of linear or cubic B-spline interpolation along one axis, at
    the same pixel-centre positions as ``_resample_scipy``; indices are clamped to the (padded) axis, which is
    scipy's mode="nearest" for linear interpolation (the cubic's edge padding keeps its taps inside)."""
    pos = (np.arange(new_len) + 0.5) * (old_len / new_len) - 0.5 + pad
    f = np.floor(pos)
    t = pos - f
    if order == 1:
        idx, w = np.stack([f, f + 1]), np.stack([1 - t, t])
    else:  # cubic B-spline basis at offsets -1, 0, 1, 2
        idx = np.stack([f - 1, f, f + 1, f + 2])
        w = np.stack([(1 - t) ** 3, 3 * t ** 3 - 6 * t ** 2 + 4, -3 * t ** 3 + 3 * t ** 2 + 3 * t + 1, t ** 3]) / 6
    return np.clip(idx, 0, old_len + 2 * pad - 1).astype(np.intp), w.astype(np.float32)


def _along(x: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """One axis interpolated with its taps (None: the axis keeps its length and is left as it is)."""
    if taps is None:
        return x
    idx, w = taps
    shape = [1] * x.ndim
    shape[axis] = -1
    acc = np.take(x, idx[0], axis=axis)
    acc *= w[0].reshape(shape)
    for i, wi in zip(idx[1:], w[1:]):
        tmp = np.take(x, i, axis=axis)
        tmp *= wi.reshape(shape)
        acc += tmp
    return acc


def _resample_separable(x: np.ndarray, new_shape: tuple, order: int, out: np.ndarray) -> np.ndarray:
    """Linear or cubic resampling as a sequence of 1D interpolations, one axis at a time.

    A tensor-product spline sampled on a grid is separable, so this equals scipy's N-D resampling (to float32
    rounding; tests/test_resampling.py) at 2 or 4 taps per axis instead of 2^N or 4^N per voxel. Only the axes that
    change length are padded, prefiltered and interpolated. In 3D the output is made one slice at a time from the
    few input slices it needs, each resampled in-plane once, so the only large arrays are the input's padded copy
    and ``out``."""
    changed = [a != b for a, b in zip(x.shape, new_shape)]
    pad = SPLINE_PAD if order == 3 else 0
    x = x.astype(np.float32, copy=False)
    if pad:
        x = np.pad(x, [(pad, pad) if c else (0, 0) for c in changed], mode="edge")
        for axis, c in enumerate(changed):
            if c:
                spline_filter1d(x, order, axis=axis, output=x, mode="nearest")
    taps = [_taps(o, n, order, pad) if c else None for o, n, c in zip(
        (s - 2 * pad if c else s for s, c in zip(x.shape, changed)), new_shape, changed)]
    if x.ndim == 2:
        out[...] = _along(_along(x, 1, taps[1]), 0, taps[0])
        return out
    cache: dict[int, np.ndarray] = {}

    def plane(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = _along(_along(x[j], 1, taps[2]), 0, taps[1])
        return cache[j]

    if taps[0] is None:
        for k in range(new_shape[0]):
            out[k] = plane(k)
            cache.clear()
        return out
    idx, w = taps[0]
    for k in range(new_shape[0]):
        for j in [j for j in cache if j < idx[0, k]]:  # slices no later output needs (indices only grow)
            del cache[j]
        np.multiply(plane(int(idx[0, k])), w[0, k], out=out[k])
        for i, wi in zip(idx[1:, k], w[1:, k]):
            out[k] += plane(int(i)) * wi
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
    if order_z <= 1:
        return _resample_separate_z(x, new_shape, order, order_z, out)
    if x.shape[1:] != new_shape[1:]:
        mid = np.empty((x.shape[0],) + new_shape[1:], np.float32)
        for z in range(x.shape[0]):
            _resample_nd(x[z], new_shape[1:], order, mid[z])
        x = mid
    return _resample_axis0(x, new_shape[0], order_z, out)


def _resample_separate_z(x: np.ndarray, new_shape: tuple, order: int, order_z: int,
                         out: np.ndarray | None) -> np.ndarray:
    """In-plane resampling per slice, the first axis on its own (nearest or linear), one output slice at a time
    from the one or two input slices it needs, each resampled in-plane once: no volume with the output's in-plane
    size and the input's slice count (a thick-to-thin case would otherwise hold one several times the image)."""
    if out is None:
        out = np.empty(new_shape, np.float32)
    old_len, new_len = x.shape[0], new_shape[0]
    if order_z == 0 or old_len == new_len:
        pos = (np.arange(new_len) + 0.5) * old_len / new_len - 0.5
        idx, w = np.clip(np.round(pos), 0, old_len - 1).astype(np.intp)[None], np.ones((1, new_len), np.float32)
    else:
        idx, w = _taps(old_len, new_len, 1, 0)
    cache: dict[int, np.ndarray] = {}

    def plane(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = _resample_nd(x[j], new_shape[1:], order)
        return cache[j]

    for k in range(new_len):
        for j in [j for j in cache if j < idx[0, k]]:  # no later output slice needs it (indices only grow)
            del cache[j]
        np.multiply(plane(int(idx[0, k])), w[0, k], out=out[k])
        for i, wi in zip(idx[1:, k], w[1:, k]):
            if wi:
                out[k] += plane(int(i)) * wi
    return out


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
