"""Overlap metrics per label.

Empty structures: when both prediction and reference lack a label, Dice and IoU are undefined and reported as
``None`` (null in JSON); means are taken over the cases where the metric is defined, and the count ``n`` is
reported beside every mean. When only one side is empty, Dice and IoU are 0.
"""
from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, ref: np.ndarray, label: int) -> tuple[int, int, int]:
    p, r = pred == label, ref == label
    tp = int(np.count_nonzero(p & r))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp


def dice_iou(pred: np.ndarray, ref: np.ndarray, label: int) -> tuple[float | None, float | None]:
    tp, fp, fn = confusion(pred, ref, label)
    if tp + fp + fn == 0:
        return None, None
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def mean_std(values) -> dict:
    v = np.array([x for x in values if x is not None], float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
