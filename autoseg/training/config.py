"""Training numbers in one dataclass; CLI flags override fields and the values used are saved with the model."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    epochs: int = 1000
    iters_per_epoch: int = 250
    val_iters: int = 50
    batch_size: int | None = None  # None: the plan's batch size
    initial_lr: float = 1e-2
    momentum: float = 0.99
    weight_decay: float = 3e-5
    grad_clip: float = 12.0
    oversample_foreground: float = 1 / 3
    num_workers: int | None = None  # None: chosen from the device and the cores
    save_every: int = 10
    ema_alpha: float = 0.9
    device: str = "auto"
    num_processes: int = 1  # > 1: DistributedDataParallel, one process per GPU (gloo on a CPU, for testing)
    amp: bool = True
    seed: int = 0
    final_validation: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in known})


def poly_lr(initial_lr: float, epoch: int, max_epochs: int, exponent: float = 0.9) -> float:
    return initial_lr * (1 - epoch / max_epochs) ** exponent
