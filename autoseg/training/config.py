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
    budget_seconds: float | None = None  # train by the clock: the LR reaches 0 as the budget (from start) ends

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in d.items() if k in known})


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
