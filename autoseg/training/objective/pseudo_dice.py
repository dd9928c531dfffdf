"""The metric the loop reports each epoch: pseudo-Dice counts (true positives, false positives, false negatives) per
foreground label or per region, summed over the validation patches (and, under DDP, over the ranks) before the Dice
is taken. The evaluation of whole cases is ``autoseg.evaluation.metrics``."""
from __future__ import annotations

import numpy as np
import torch

from .losses import region_masks


def pseudo_dice_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int,
                       ignore_label: int | None = None) -> np.ndarray:
    """(3, K-1) array of TP, FP, FN per foreground class, summed over the batch (softmax outputs, one label map);
    voxels with the ignore label are not counted."""
    pred = logits.argmax(1)
    tgt = target[:, 0]
    valid = tgt != ignore_label if ignore_label is not None else torch.ones_like(tgt, dtype=torch.bool)
    out = np.zeros((3, num_classes - 1))
    for k in range(1, num_classes):
        p, t = (pred == k) & valid, (tgt == k) & valid
        out[0, k - 1] = (p & t).sum().item()
        out[1, k - 1] = (p & ~t).sum().item()
        out[2, k - 1] = (~p & t).sum().item()
    return out


def region_pseudo_dice_counts(logits: torch.Tensor, target: torch.Tensor, regions: list[tuple[int, ...]],
                              ignore_label: int | None = None) -> np.ndarray:
    """(3, R) TP, FP, FN per region: sigmoid over 0.5 against the region's mask, ignored voxels left out."""
    pred = logits > 0  # sigmoid(x) > 0.5
    tgt = region_masks(target, regions) > 0
    valid = target != ignore_label if ignore_label is not None else torch.ones_like(target, dtype=torch.bool)
    p, t = pred & valid, tgt & valid
    dims = [0] + list(range(2, p.ndim))
    return np.stack([(p & t).sum(dims).cpu().numpy(), (p & ~t).sum(dims).cpu().numpy(),
                     (~p & t).sum(dims).cpu().numpy()]).astype(float)
