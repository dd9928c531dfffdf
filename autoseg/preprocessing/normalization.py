"""Intensity normalisation schemes, chosen per channel by the planner (see planner.heuristics)."""
from __future__ import annotations

import numpy as np

from ..utils import AutosegError


def normalize_channel(x: np.ndarray, scheme: str, use_mask: bool, mask: np.ndarray | None,
                      props: dict | None) -> np.ndarray:
    """Return a new float32 array; ``x`` is not modified."""
    x = x.astype(np.float32, copy=True)
    if scheme == "ZScoreNormalization":
        if use_mask and mask is not None and mask.any():
            vals = x[mask]
            x = (x - vals.mean()) / max(float(vals.std()), 1e-8)
            x[~mask] = 0
        else:
            x = (x - x.mean()) / max(float(x.std()), 1e-8)
        return x
    if scheme == "CTNormalization":
        if props is None:
            raise AutosegError("CT normalisation needs the foreground intensity properties from the fingerprint")
        np.clip(x, props["percentile_00_5"], props["percentile_99_5"], out=x)
        return (x - props["mean"]) / max(float(props["std"]), 1e-8)
    if scheme == "NoNormalization":
        return x
    if scheme == "RGBTo01Normalization":
        return x / 255.0
    if scheme == "RescaleTo01Normalization":  # channel name "rescale_to_0_1": per image, min -> 0, max -> 1
        x -= x.min()
        return x / max(float(x.max()), 1e-8)
    raise AutosegError(f"unknown normalisation scheme {scheme!r}")


def normalize(data: np.ndarray, schemes: list[str], use_mask: list[bool], mask: np.ndarray | None,
              intensity_props: dict[str, dict]) -> np.ndarray:
    if len(schemes) != data.shape[0]:
        raise AutosegError(f"the plans list {len(schemes)} normalisation schemes, but the image has "
                           f"{data.shape[0]} channels")
    return np.stack([normalize_channel(data[c], schemes[c], use_mask[c], mask, intensity_props.get(str(c)))
                     for c in range(data.shape[0])])
