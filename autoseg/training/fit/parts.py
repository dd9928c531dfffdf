"""The parts a training loop drives, each built by one small function from the fold's setup and the config:
the network (seeded, optionally from pretrained weights), the loss and the pseudo-Dice metric, the optimiser, the
step (mixed precision, gradient clipping) and the data streams. A variant is a different part: a residual
encoder is another registered network, region outputs another loss and metric, the cascade's extra input another
stream, torchrun another ``Sync``; the loop does not change."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ...core.allocator import keep_freed_memory
from ...core.device import autocast_dtype, plan_precision
from ...networks import build_network
from ...networks.checkpoint import load_matching_weights
from ..config import TrainConfig
from ..distributed import Sync
from ..objective.losses import LOSSES, DeepSupervisionLoss, LossSpec
from ..objective.pseudo_dice import pseudo_dice_counts, region_pseudo_dice_counts
from ..sampling.patches import BatchStream, make_loader
from ..setup import FoldSetup


def default_workers(device: torch.device) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(cores - 1, 12))
    return 1 if cores >= 2 else 0


def seeded_network(architecture: dict, seed: int) -> torch.nn.Module:
    """The same seed gives the same initial weights, without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(architecture["network_class_name"], dict(architecture["arch_kwargs"]))


def pretrained_report(loaded: list[str], skipped: list[str], path: str) -> str:
    lines = [f"pretrained weights from {path}: {len(loaded)} of {len(loaded) + len(skipped)} tensors loaded"]
    lines += [f"  not loaded (initialised as usual): {s}" for s in skipped]
    return "\n".join(lines)


def build_metric(setup: FoldSetup) -> Callable[[torch.Tensor, torch.Tensor], np.ndarray]:
    """Pseudo-Dice counts per foreground label, or per region for region-based training."""
    spec = setup.plans.label_spec
    if spec.has_regions:
        return lambda out, y: region_pseudo_dice_counts(out, y, spec.regions, spec.ignore_label)
    k = setup.num_classes
    return lambda out, y: pseudo_dice_counts(out, y, k, spec.ignore_label)


def outputs_to_fp32(out):
    """Network outputs (a tensor, or the deep-supervision list) in fp32."""
    return [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()


class Stepper:
    """Forward pass under autocast, loss, backward, gradient clipping and the optimiser step."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.nn.Module,
                 device: torch.device, amp: bool, grad_clip: float, precision: str = "fp32"):
        self.model, self.optimizer, self.loss, self.device = model, optimizer, loss, device
        self.amp_dtype = autocast_dtype(device, precision) if amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.grad_clip = grad_clip

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor):
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.model(x)
        out = outputs_to_fp32(out)  # softmax, Dice and cross-entropy in fp32 whatever the network ran in
        return out, self.loss(out, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        _, loss = self.forward_loss(x, y)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        return float(loss.detach())

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr


@dataclass
class Parts:
    net: torch.nn.Module  # the plain network (checkpoints, validation)
    stepper: Stepper
    train_batches: Iterator
    val_batches: Iterator
    metric: Callable[[torch.Tensor, torch.Tensor], np.ndarray]  # (logits, target) -> (3, K-1) TP/FP/FN
    sync: Sync
    device: torch.device
    batch_size: int  # global
    local_batch: int  # this process's share
    workers: int

    def next_batch(self, it: Iterator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(it)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def close(self) -> None:
        self.train_batches = self.val_batches = iter(())  # ends the loader workers


def build_optimizer(net: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    return make_optimizer(net.parameters(), tc.optimizer, tc.initial_lr, tc.momentum, tc.weight_decay)


def make_optimizer(params, name: str, lr: float, momentum: float = 0.99,
                   weight_decay: float = 3e-5) -> torch.optim.Optimizer:
    """``sgd``: nnU-Net's SGD with Nesterov momentum. ``adamw``: AdamW with amsgrad, as nnU-Net's Adam trainer
    variants (the momentum is not used)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, amsgrad=True)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)


def build_loss(setup: FoldSetup, name: str = "default") -> torch.nn.Module:
    """The registered loss ``name`` (default: Dice + CE over labels, or Dice + BCE per region; either leaves
    ignore-labelled voxels out), one term per deep-supervision output."""
    n_out = len(setup.cfg.architecture.arch_kwargs["strides"]) - 1
    spec = setup.plans.label_spec
    ls = LossSpec(setup.num_classes, setup.cfg.batch_dice, spec.ignore_label,
                  tuple(tuple(r) for r in spec.regions) if spec.has_regions else None)
    return DeepSupervisionLoss(LOSSES.get(name)(ls), n_out)


def build_streams(setup: FoldSetup, tc: TrainConfig, local_batch: int, rank: int, start_epoch: int, workers: int,
                  pin: bool) -> tuple[Iterator, Iterator]:
    """Augmented training batches and plain validation batches; the seeds follow the config's seed, the epoch a
    resume starts at and the rank, so a resumed or distributed run does not replay the same patches."""
    cfg = setup.cfg
    folder = setup.data_folder
    aniso3d = cfg.dim == 3 and bool(cfg.resampling_data["separate_z"])
    prev = setup.previous_stage_folder  # the cascade's extra input, or None
    extra = {"previous_stage": prev, "num_classes": setup.num_classes}
    train = BatchStream(folder, setup.train_cases, cfg.patch_size, local_batch, aniso3d, True,
                        (tc.seed * 1000 + start_epoch) * 64 + rank, tc.oversample_foreground, **extra,
                        augmentation=tc.augmentation)
    val = BatchStream(folder, setup.val_cases or setup.train_cases, cfg.patch_size, local_batch, aniso3d, False,
                      (tc.seed * 1000 + 999) * 64 + rank, tc.oversample_foreground, **extra)
    return iter(make_loader(train, workers, pin)), iter(make_loader(val, min(workers, 1), pin))


def set_compute_threads(device: torch.device, log: Callable[[str], None] | None = None) -> int:
    """On a CPU the training process computes with the cores that other processes leave free (measured over
    half a second; every core on an idle machine; data workers set their own to one thread). Returns the count."""
    if device.type != "cpu":
        return torch.get_num_threads()
    from ...core.cpu_share import use_free_cores

    say = (lambda line: log(line + " (re-measured every epoch)")) if log is not None else None
    return use_free_cores(say=say, doing="training computes")[0]


def build_parts(setup: FoldSetup, tc: TrainConfig, sync: Sync, device: torch.device, start_epoch: int,
                log: Callable[[str], None]) -> Parts:
    net = seeded_network(setup.architecture, tc.seed)
    if tc.pretrained_weights and start_epoch == 0:
        loaded, skipped = load_matching_weights(net, tc.pretrained_weights)
        log(pretrained_report(loaded, skipped, tc.pretrained_weights))
    net = net.to(device)
    stepper = Stepper(sync.wrap(net, device), build_optimizer(net, tc), build_loss(setup, tc.loss), device, tc.amp,
                      tc.grad_clip, plan_precision(setup.cfg))
    if stepper.amp_dtype is not None and device.type == "cpu":
        log("training steps run in bf16 autocast on this CPU (the plan timed them faster than fp32; --no-amp for "
            "fp32)")
    batch = tc.batch_size or setup.cfg.batch_size
    local = max(1, -(-batch // sync.world_size))
    workers = tc.num_workers if tc.num_workers is not None else default_workers(device)
    keep_freed_memory()  # before the data workers fork, so that they keep theirs too
    set_compute_threads(device, log)
    train, val = build_streams(setup, tc, local, sync.rank, start_epoch, workers, device.type == "cuda")
    return Parts(net, stepper, train, val, build_metric(setup), sync, device, batch, local, workers)
