"""Soft Dice + cross-entropy (softmax over labels) or soft Dice + BCE (a sigmoid per region), with deep
supervision over the decoder's resolutions. Voxels with the ignore label take no part in either term."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.errors import AutosegError
from ...core.registry import Registry


class SoftDiceLoss(nn.Module):
    """1 - mean soft Dice over foreground classes. ``batch_dice`` pools the whole batch into one volume per class
    (stabler for small structures in 3D); otherwise Dice is computed per sample and averaged."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, include_background: bool = False):
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth
        self.include_background = include_background

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``valid`` (B, 1, ...) masks out ignored voxels."""
        probs = torch.softmax(logits.float(), 1)
        onehot = torch.zeros_like(probs).scatter_(1, target.long(), 1)
        if not self.include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]
        return self.from_probs(probs, onehot, valid)

    def from_probs(self, probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        if valid is not None:
            probs, onehot = probs * valid, onehot * valid
        axes = tuple(range(2, probs.ndim))
        if self.batch_dice:
            axes = (0,) + axes
        inter = (probs * onehot).sum(axes)
        denom = probs.sum(axes) + onehot.sum(axes)
        dice = (2 * inter + self.smooth) / torch.clamp(denom + self.smooth, min=1e-8)
        return 1 - dice.mean()


def split_ignore(target: torch.Tensor, ignore_label: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(target with ignored voxels set to background, mask of valid voxels or None without an ignore label)."""
    if ignore_label is None:
        return target, None
    valid = target != ignore_label
    return torch.where(valid, target, torch.zeros_like(target)), valid.float()


class DiceCELoss(nn.Module):
    def __init__(self, batch_dice: bool = False, weight_dice: float = 1.0, weight_ce: float = 1.0,
                 ignore_label: int | None = None):
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice)
        self.weight_dice = weight_dice
        self.weight_ce = weight_ce
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, K, ...), target (B, 1, ...) integer labels; ignore-labelled voxels are left out of both
        terms (cross-entropy is averaged over the valid voxels only)."""
        tgt, valid = split_ignore(target, self.ignore_label)
        ce = F.cross_entropy(logits.float(), target[:, 0].long(), ignore_index=-100 if valid is None
                             else self.ignore_label)
        if valid is not None and not valid.any():
            ce = logits.sum() * 0.0  # nothing labelled in this patch: no gradient, no NaN
        return self.weight_dice * self.dice(logits, tgt, valid) + self.weight_ce * ce


class RegionDiceBCELoss(nn.Module):
    """Region-based training: a sigmoid per region (regions may overlap or nest), soft Dice + binary
    cross-entropy per region; ``regions`` are the label values each region unites."""

    def __init__(self, regions: list[tuple[int, ...]], batch_dice: bool = False, ignore_label: int | None = None,
                 weight_dice: float = 1.0, weight_bce: float = 1.0):
        super().__init__()
        self.regions, self.ignore_label = regions, ignore_label
        self.dice = SoftDiceLoss(batch_dice, include_background=True)
        self.weight_dice, self.weight_bce = weight_dice, weight_bce

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tgt, valid = split_ignore(target, self.ignore_label)
        masks = region_masks(tgt, self.regions)
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
        if valid is None:
            bce = bce.mean()
        else:
            bce = (bce * valid).sum() / torch.clamp(valid.sum() * len(self.regions), min=1)
        return self.weight_dice * self.dice.from_probs(torch.sigmoid(logits), masks, valid) + self.weight_bce * bce


def region_masks(seg: torch.Tensor, regions: list[tuple[int, ...]]) -> torch.Tensor:
    """(B, 1, ...) label map -> (B, R, ...) float masks: voxel in region r when its value is one of r's values."""
    return torch.cat([torch.isin(seg, torch.tensor(r, device=seg.device, dtype=seg.dtype)) for r in regions],
                     1).float()


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


# --- losses by name: `train --loss NAME`; plugins register more with ``register_loss`` ---

@dataclass(frozen=True)
class LossSpec:
    """What a loss factory is told about the task. The loss it returns takes the network's logits (N, C, ...) in
    fp32 and the label map (N, 1, ...) as integers; deep supervision wraps it, one term per decoder output."""
    num_outputs: int  # the network's output channels
    batch_dice: bool  # Dice over the whole batch (nnU-Net's choice for 3d_fullres) or per sample
    ignore_label: int | None  # voxels of this label take no part
    regions: tuple[tuple[int, ...], ...] | None  # region-based training: the labels each sigmoid output covers


LOSSES: Registry[Callable[[LossSpec], nn.Module]] = Registry("loss")


def register_loss(name: str):
    """Decorator for a factory ``LossSpec -> nn.Module`` registered as ``name``."""
    return LOSSES.register(name)


@register_loss("dice_ce")
def _dice_ce(spec: LossSpec) -> nn.Module:
    if spec.regions:
        raise AutosegError("--loss dice_ce: this dataset is region-based (sigmoid outputs); use dice_bce")
    return DiceCELoss(batch_dice=spec.batch_dice, ignore_label=spec.ignore_label)


@register_loss("dice_bce")
def _dice_bce(spec: LossSpec) -> nn.Module:
    if not spec.regions:
        raise AutosegError("--loss dice_bce: needs region labels (dataset.json regions); use dice_ce")
    return RegionDiceBCELoss(list(spec.regions), spec.batch_dice, spec.ignore_label)


@register_loss("default")
def _default(spec: LossSpec) -> nn.Module:
    """nnU-Net's: Dice + cross-entropy over labels, or Dice + BCE per region."""
    return (_dice_bce if spec.regions else _dice_ce)(spec)
