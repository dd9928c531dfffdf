"""Training numbers in one dataclass. The `train` command's flags are generated from its fields (the field
metadata holds the flag and its help), values are checked before anything runs, and the values used are saved
beside the model (``config.json``)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..core.errors import AutosegError


def _opt(help: str, flag: str | None = None, check: str | None = None, negate: bool = False) -> dict:
    """Field metadata: ``flag`` (default --field-name), ``check`` (a rule for ``validate``), ``negate`` (a boolean
    that defaults to on and is switched off by its flag)."""
    return {"help": help, "flag": flag, "check": check, "negate": negate}


OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 1e-2, "adamw": 1e-3}  # nnU-Net's SGD; AdamW as nnU-Net's Adam variants (amsgrad, 1e-3)
BUDGET_OPTIMIZER = "adamw"  # see docs/budget.md: faster from the first steps, which a short run lacks


@dataclass
class TrainConfig:
    epochs: int = field(default=1000, metadata=_opt("epochs (without a budget: the schedule's length)", check=">=1"))
    iters_per_epoch: int = field(default=250, metadata=_opt("optimiser steps per epoch", check=">=1"))
    val_iters: int = field(default=50, metadata=_opt("validation-patch batches per epoch (pseudo-Dice)", check=">=0"))
    batch_size: int | None = field(default=None, metadata=_opt("global batch size (default: the plan's)", check=">=1"))
    optimizer: str = field(default="sgd", metadata=_opt(
        "sgd (nnU-Net's: Nesterov momentum) or adamw (AdamW with amsgrad, faster in short runs); training under a "
        "budget uses adamw unless this is given", check="|".join(OPTIMIZERS)))
    initial_lr: float = field(default=1e-2, metadata=_opt(
        "initial learning rate of the poly schedule (default 0.01 for sgd, 0.001 for adamw)", "--lr", ">0"))
    momentum: float = field(default=0.99, metadata=_opt("SGD Nesterov momentum", check="[0,1)"))
    weight_decay: float = field(default=3e-5, metadata=_opt("weight decay (decoupled for adamw)", check=">=0"))
    grad_clip: float = field(default=12.0, metadata=_opt("gradient-norm clipping threshold", check=">0"))
    oversample_foreground: float = field(default=1 / 3, metadata=_opt(
        "share of each batch centred on a foreground voxel", check="[0,1]"))
    num_workers: int | None = field(default=None, metadata=_opt(
        "data-loading worker processes (default: from the device and the cores)", check=">=0"))
    save_every: int = field(default=10, metadata=_opt(
        "write checkpoint_latest.pt at least every N epochs (every epoch when that is cheap)", check=">=1"))
    ema_alpha: float = field(default=0.9, metadata=_opt(
        "smoothing factor of the pseudo-Dice moving average that picks checkpoint_best.pt", check="[0,1)"))
    device: str = field(default="auto", metadata=_opt("auto, cpu, cuda or cuda:N"))
    num_processes: int = field(default=1, metadata=_opt(
        "train with DistributedDataParallel on N GPUs (the batch is split over them; gloo on a CPU)", "--num-gpus",
        ">=1"))
    amp: bool = field(default=True, metadata=_opt(
        "no mixed precision: fp32 on a GPU, and on a CPU whose plan chose bf16", "--no-amp", negate=True))
    seed: int = field(default=0, metadata=_opt("seed of the network's initial weights and of data sampling",
                                               check=">=0"))
    final_validation: bool = field(default=True, metadata=_opt(
        "skip the final full-resolution validation", "--no-validation", negate=True))
    save_validation_probabilities: bool = field(default=False, metadata=_opt(
        "keep each held-out case's class probabilities (validation/<case>.npz) so that `autoseg find-best` can rank "
        "ensembles of configurations"))
    pretrained_weights: str | None = field(default=None, metadata=_opt(
        "checkpoint whose layers (matching names and shapes) initialise the network; the rest is initialised as "
        "usual and a report says which layers were loaded"))
    trainer: str = field(default="default", metadata=_opt(
        "a named trainer variant: a bundle of these settings and parts (`autoseg plugins` lists them); a flag given "
        "here overrides the variant's value"))
    network: str | None = field(default=None, metadata=_opt(
        "a registered network to build from the plan's network arguments instead of the plan's own class"))
    loss: str = field(default="default", metadata=_opt(
        "a registered loss (default: Dice + cross-entropy, or Dice + BCE for regions)"))
    augmentation: str = field(default="default", metadata=_opt(
        "a registered augmentation pipeline (default: nnU-Net's spatial, intensity and mirroring transforms; none)"))
    # set from --budget (text such as 20m) or the plan: train by the clock, the LR reaching 0 as the budget ends
    budget_seconds: float | None = field(default=None, metadata={"cli": False, "check": ">0"})

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> "TrainConfig":
        """Raise an AutosegError naming the flag for a value training cannot use (an epoch of 0 steps trains on
        NaN, a negative learning rate climbs the loss)."""
        for f in fields(self):
            rule, value = f.metadata.get("check"), getattr(self, f.name)
            if rule is None or value is None:
                continue
            if not _satisfies(value, rule):
                flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
                if f.name == "budget_seconds":
                    flag = "--budget"
                must = _RULE_TEXT.get(rule) or "one of " + ", ".join(rule.split("|"))
                raise AutosegError(f"{flag} {value!r} is out of range: it must be {must}")
        return self


_RULE_TEXT = {">=1": "an integer of at least 1", ">=0": "at least 0", ">0": "a number above 0",
              "[0,1)": "in [0, 1)", "[0,1]": "in [0, 1]"}


def _satisfies(value, rule: str) -> bool:
    if "|" in rule:
        return value in rule.split("|")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if rule == ">=1":
        return isinstance(value, int) and value >= 1
    return {">=0": value >= 0, ">0": value > 0, "[0,1)": 0 <= value < 1, "[0,1]": 0 <= value <= 1}[rule]


def poly_lr(initial_lr: float, epoch: float, max_epochs: float, exponent: float = 0.9) -> float:
    return initial_lr * max(0.0, 1 - epoch / max_epochs) ** exponent


class BudgetClock:
    """Training by the clock. ``start`` is when the train command started; training steps may run until
    ``start + budget - reserve`` where ``reserve`` (the final validation and checkpoint) is re-estimated from the
    measured speed. The learning rate follows the poly schedule over the fraction of that training time used, so it
    reaches zero as the budget ends whatever the real speed turns out to be. ``now`` is injectable for tests."""

    def __init__(self, budget_seconds: float, start: float, reserve: float = 0.0, now=None):
        import time

        self.budget, self.start, self.reserve = float(budget_seconds), float(start), float(reserve)
        self.now = now or time.time
        self.loop_start = self.now()

    @property
    def deadline(self) -> float:
        return self.start + self.budget - self.reserve

    def fraction(self) -> float:
        span = self.deadline - self.loop_start
        return 1.0 if span <= 0 else min(1.0, max(0.0, (self.now() - self.loop_start) / span))

    def lr(self, initial_lr: float) -> float:
        return poly_lr(initial_lr, self.fraction(), 1.0)

    def left(self) -> float:
        return self.deadline - self.now()

    def expected_epochs(self, done: int, epoch_seconds: float) -> int:
        return done + max(0, int(round(self.left() / max(epoch_seconds, 1e-9))))
