"""Overlap metrics per label.

Empty structures: when both prediction and reference lack a label, Dice and IoU are undefined and reported as
``None`` (null in JSON); means are taken over the cases where the metric is defined, and the count ``n`` is
reported beside every mean. When only one side is empty, Dice and IoU are 0.
"""
from __future__ import annotations

import numpy as np


def dice_iou_masks(p: np.ndarray, r: np.ndarray) -> tuple[float | None, float | None]:
    """Dice and IoU of two boolean masks; (None, None) when both are empty."""
    tp = int(np.count_nonzero(p & r))
    fp, fn = int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp
    if tp + fp + fn == 0:
        return None, None
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def dice_iou(pred: np.ndarray, ref: np.ndarray, label: int) -> tuple[float | None, float | None]:
    return dice_iou_masks(pred == label, ref == label)


def mean_std(values) -> dict:
    v = np.array([x for x in values if x is not None], float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
