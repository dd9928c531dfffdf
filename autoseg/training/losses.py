"""Soft Dice + cross-entropy, with deep supervision over the decoder's resolutions."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftDiceLoss(nn.Module):
    """1 - mean soft Dice over foreground classes. ``batch_dice`` pools the whole batch into one volume per class
    (stabler for small structures in 3D); otherwise Dice is computed per sample and averaged."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, include_background: bool = False):
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.include_background = include_background

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), 1)
        onehot = torch.zeros_like(probs).scatter_(1, target.long(), 1)
        if not self.include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
        axes = tuple(range(2, probs.ndim))
        if self.batch_dice:
            axes = (0,) + axes
        inter = (probs * onehot).sum(axes)
        denom = probs.sum(axes) + onehot.sum(axes)
        dice = (2 * inter + self.smooth) / torch.clamp(denom + self.smooth, min=1e-8)
        return 1 - dice.mean()


class DiceCELoss(nn.Module):
    def __init__(self, batch_dice: bool = False, weight_dice: float = 1.0, weight_ce: float = 1.0):
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice)
        self.weight_dice = weight_dice
        self.weight_ce = weight_ce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, K, ...), target (B, 1, ...) integer labels."""
        ce = F.cross_entropy(logits.float(), target[:, 0].long())
        return self.weight_dice * self.dice(logits, target) + self.weight_ce * ce


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Halve the weight per resolution level, give the coarsest output none, normalise to sum to one."""
    w = [1 / 2 ** i for i in range(n_outputs)]
    if n_outputs > 1:
        w[-1] = 0.0
    s = sum(w)
    return [x / s for x in w]


def downsample_target(target: torch.Tensor, shape) -> torch.Tensor:
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.interpolate(target.float(), size=tuple(shape), mode="nearest-exact").to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    def __init__(self, loss: nn.Module, n_outputs: int):
        super().__init__()
        self.loss = loss
        self.weights = deep_supervision_weights(n_outputs)

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        total = outputs[0].new_zeros(())
        for w, out in zip(self.weights, outputs):
            # zero-weight terms are kept (on the smallest output, so cheap): every head then takes part in the
            # graph, which DistributedDataParallel requires
            total = total + w * self.loss(out, downsample_target(target, out.shape[2:]))
        return total
