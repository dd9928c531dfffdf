"""Trainer variants by name: `autoseg train --trainer NAME`.

nnU-Net users change training by naming a trainer class (``-tr nnUNetTrainer_5epochs``), each a subclass of a
1,400-line trainer. Here a variant is data: a named bundle of ``TrainConfig`` values, the parts included (``loss``,
``network``, ``augmentation`` name registered parts). Flags the user gives override the variant's values. A plugin
registers its own with ``register_trainer`` (see ``autoseg.core.registry``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..core.errors import AutosegError
from ..core.registry import Registry
from ..networks import network_class
from .config import TrainConfig
from .objective.losses import LOSSES
from .sampling.augmentation import AUGMENTATIONS


@dataclass(frozen=True)
class TrainerVariant:
    description: str
    settings: dict[str, Any] = field(default_factory=dict)  # TrainConfig field -> value


TRAINERS: Registry[TrainerVariant] = Registry("trainer")


def register_trainer(name: str, description: str, **settings: Any) -> TrainerVariant:
    """A variant named ``name`` setting these ``TrainConfig`` fields; unknown fields are refused at once."""
    known = {f.name for f in fields(TrainConfig)} - {"trainer", "budget_seconds"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise AutosegError(f"trainer {name!r}: unknown setting(s) {unknown}; settings are {sorted(known)}")
    return TRAINERS.register(name, TrainerVariant(description, dict(settings)))


register_trainer("default", "nnU-Net's recipe: SGD with Nesterov momentum, poly schedule, Dice + CE, full "
                            "augmentation (AdamW under a budget)")
register_trainer("noDA", "no data augmentation (nnUNetTrainerNoDA)", augmentation="none")
register_trainer("adamw", "AdamW with amsgrad from lr 0.001 (nnU-Net's Adam variants)", optimizer="adamw",
                 initial_lr=1e-3)
register_trainer("5epochs", "5 epochs (nnUNetTrainer_5epochs): a quick check that everything runs", epochs=5)


def apply_trainer(tc: TrainConfig, explicit: set[str]) -> tuple[TrainConfig, set[str]]:
    """``tc`` with its trainer variant's settings where the user gave no flag, and the names it set (they count as
    chosen, so a budget's defaults do not replace them); then every named part is checked to exist."""
    variant = TRAINERS.get(tc.trainer)
    chosen = set(explicit)
    for key, value in variant.settings.items():
        if key not in explicit:
            setattr(tc, key, value)
            chosen.add(key)
    LOSSES.get(tc.loss)
    AUGMENTATIONS.get(tc.augmentation)
    if tc.network is not None:
        network_class(tc.network, "--network")
    return tc, chosen
