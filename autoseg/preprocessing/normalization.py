"""Intensity normalisation schemes, chosen per channel by the planner (see planner.heuristics)."""
from __future__ import annotations

import numpy as np

from ..core.errors import AutosegError


def _mean_std(x: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """Mean and standard deviation (of the masked voxels), accumulated in float64 one slab at a time, so that no
    full-size temporary is made (np.std of the masked values would hold two)."""
    n, total, sq = 0, 0.0, 0.0
    shift = float(x.flat[0]) if x.size else 0.0  # shifted sums keep the variance exact when mean >> std
    for i in range(x.shape[0]):
        v = x[i][mask[i]] if mask is not None else x[i].ravel()
        d = v.astype(np.float64) - shift
        n, total, sq = n + d.size, total + float(d.sum()), sq + float(np.dot(d, d))
    if n == 0:
        return 0.0, 1.0
    mean = total / n
    return mean + shift, float(np.sqrt(max(sq / n - mean * mean, 0.0)))


def normalize_channel(x: np.ndarray, scheme: str, use_mask: bool, mask: np.ndarray | None,
                      props: dict | None, out: np.ndarray | None = None) -> np.ndarray:
    """Return a float32 array (``out`` when given, else a new one); ``x`` is not modified. Works in place on the
    copy, so the peak is the copy plus the masked values, not several full-size temporaries."""
    if out is None:
        out = np.empty(x.shape, np.float32)
    out[...] = x
    x = out
    if scheme == "ZScoreNormalization":
        if use_mask and mask is not None and mask.any():
            mean, std = _mean_std(x, mask)
            x -= mean
            x /= max(std, 1e-8)
            x[~mask] = 0
        else:
            mean, std = _mean_std(x, None)
            x -= mean
            x /= max(std, 1e-8)
        return x
    if scheme == "CTNormalization":
        if props is None:
            raise AutosegError("CT normalisation needs the foreground intensity properties from the fingerprint")
        np.clip(x, props["percentile_00_5"], props["percentile_99_5"], out=x)
        x -= props["mean"]
        x /= max(float(props["std"]), 1e-8)
        return x
    if scheme == "NoNormalization":
        return x
    if scheme == "RGBTo01Normalization":
        x /= 255.0
        return x
    if scheme == "RescaleTo01Normalization":  # channel name "rescale_to_0_1": per image, min -> 0, max -> 1
        x -= x.min()
        x /= max(float(x.max()), 1e-8)
        return x
    raise AutosegError(f"unknown normalisation scheme {scheme!r}")


def normalize(data: np.ndarray, schemes: list[str], use_mask: list[bool], mask: np.ndarray | None,
              intensity_props: dict[str, dict]) -> np.ndarray:
    if len(schemes) != data.shape[0]:
        raise AutosegError(f"the plans list {len(schemes)} normalisation schemes, but the image has "
                           f"{data.shape[0]} channels")
    out = np.empty(data.shape, np.float32)
    for c in range(data.shape[0]):
        normalize_channel(data[c], schemes[c], use_mask[c], mask, intensity_props.get(str(c)), out[c])
    return out
