"""The training loop. It knows nothing of files: a schedule gives the learning rate and says when to stop, the
parts (network, step, data streams, metric, DDP agreement) were assembled for it, and callbacks are told what
happened (log line, log.jsonl, progress plot, checkpoints).

One epoch = up to ``iters_per_epoch`` optimiser steps on augmented patches, then ``val_iters`` batches of
un-augmented validation patches whose summed true/false positives give a pseudo-Dice per class; its exponential
moving average (``ema_alpha``) marks the best epoch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ...core.faults import fault_point
from .parts import Parts
from .schedule import LRSchedule


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch (and a checkpoint carries across a resume)."""

    epoch: int = 0  # epochs completed
    log: list[dict] = field(default_factory=list)
    ema: float | None = None
    best_ema: float = -1.0

    def update_ema(self, mean_pseudo_dice: float, alpha: float) -> bool:
        """Fold one epoch's mean pseudo-Dice into the moving average; True when it is the best so far."""
        self.ema = mean_pseudo_dice if self.ema is None else alpha * self.ema + (1 - alpha) * mean_pseudo_dice
        if self.ema > self.best_ema:
            self.best_ema = self.ema
            return True
        return False


class Callback:
    """Hooks the loop calls (rank 0 only); every method is optional."""

    def on_train_begin(self, state: LoopState) -> None: ...

    def on_epoch_end(self, state: LoopState, record: dict, improved: bool, last: bool) -> None: ...

    def on_train_end(self, state: LoopState) -> None:
        """Training ended as scheduled (not on an interruption)."""


def _train_steps(parts: Parts, schedule: LRSchedule, iters: int, check_stop: Callable[[], None]) -> dict:
    parts.net.train()
    t0, wait, losses = time.time(), 0.0, []
    for it in range(iters):
        lr = schedule.step_lr(it, time.time() - t0)
        if lr is None:
            break
        parts.stepper.set_lr(lr)
        tw = time.time()
        x, y = parts.next_batch(parts.train_batches)
        wait += time.time() - tw
        losses.append(parts.stepper.train_step(x, y))
        fault_point("step")
        check_stop()
    return {"losses": losses, "train_seconds": time.time() - t0, "wait": wait}


def _validation_patches(parts: Parts, iters: int, num_classes: int) -> tuple[np.ndarray, list[float]]:
    parts.net.eval()
    counts = np.zeros((3, num_classes - 1))
    losses = []
    with torch.no_grad():
        for _ in range(iters):
            x, y = parts.next_batch(parts.val_batches)
            out, loss = parts.stepper.forward_loss(x, y)
            losses.append(float(loss))
            counts += parts.metric(out[0] if isinstance(out, list) else out, y)
    return counts, losses


def run_epoch(parts: Parts, schedule: LRSchedule, epoch: int, iters: int, val_iters: int, num_classes: int,
              check_stop: Callable[[], None]) -> dict:
    """One epoch's steps and validation patches; returns its log record (without the moving average)."""
    t0 = time.time()
    lr = schedule.epoch_lr(epoch)
    parts.stepper.set_lr(lr)
    tr = _train_steps(parts, schedule, iters, check_stop)
    counts, val_losses = _validation_patches(parts, val_iters, num_classes)
    counts, train_loss, val_loss = parts.sync.reduce_epoch(counts, tr["losses"], val_losses)
    tp, fp, fn = counts
    with np.errstate(invalid="ignore", divide="ignore"):
        pseudo = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    n, ts = len(tr["losses"]), tr["train_seconds"]
    return {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
            "pseudo_dice": [None if np.isnan(v) else float(v) for v in pseudo],
            "lr": lr, "epoch_seconds": time.time() - t0, "train_seconds": ts,
            "data_wait_share": tr["wait"] / max(ts, 1e-9), "iterations": n,
            "lr_end": float(parts.stepper.optimizer.param_groups[0]["lr"]),
            "iters_per_second": n / max(ts, 1e-9), "elapsed_seconds": schedule.elapsed()}


def fit(parts: Parts, schedule: LRSchedule, state: LoopState, callbacks: list[Callback], iters: int, val_iters: int,
        ema_alpha: float, num_classes: int, check_stop: Callable[[], None]) -> LoopState:
    """Run epochs until the schedule says stop. ``check_stop`` raises to interrupt (a signal), between steps."""
    for cb in callbacks:
        cb.on_train_begin(state)
    schedule.begin()  # the clock's training time starts here
    while not schedule.finished(state.epoch):
        rec = run_epoch(parts, schedule, state.epoch, iters, val_iters, num_classes, check_stop)
        pd = [v for v in rec["pseudo_dice"] if v is not None]
        improved = state.update_ema(float(np.mean(pd)) if pd else 0.0, ema_alpha)
        rec["ema_pseudo_dice"] = state.ema
        state.log.append(rec)
        state.epoch += 1
        last = schedule.after_epoch(rec)
        for cb in callbacks:
            cb.on_epoch_end(state, rec, improved, last)
        if last:
            break
        check_stop()
    for cb in callbacks:
        cb.on_train_end(state)
    return state
