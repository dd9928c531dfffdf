"""The two training schedules behind one interface: the loop asks a schedule for the learning rate (per epoch and
per step), whether the epoch or the training ends, and keeps its state in the checkpoint for a resume.

- ``EpochSchedule``: nnU-Net's poly learning rate over a fixed number of epochs.
- ``ClockSchedule``: training by a wall-clock budget (``BudgetClock``): the poly schedule runs over the fraction of
  the training time used, the last epoch stops mid-way when the time is up, and a reserve for the final checkpoint
  and validation (``reserve_for(step_seconds)``, re-estimated from the measured speed) is kept free.
"""
from __future__ import annotations

import time
from typing import Callable, Protocol

from .config import BudgetClock, poly_lr


class Schedule(Protocol):
    def begin(self) -> None:
        """Called once by the loop right before the first epoch (after ``load_state_dict`` on a resume)."""

    def epoch_lr(self, epoch: int) -> float: ...

    def step_lr(self, it: int, epoch_elapsed: float) -> float | None:
        """The learning rate for step ``it`` of the epoch, or None to end the epoch now."""

    def finished(self, epochs_done: int) -> bool:
        """Checked before each epoch."""

    def after_epoch(self, record: dict) -> bool:
        """Checked after each epoch with its log record; True ends training."""

    def total_text(self, epochs_done: int, epoch_seconds: float) -> str: ...

    def elapsed(self) -> float: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...


class EpochSchedule:
    def __init__(self, initial_lr: float, epochs: int, start_time: float):
        self.initial_lr, self.epochs, self.start_time = initial_lr, epochs, start_time
        self._lr = initial_lr

    def begin(self) -> None:
        pass

    def epoch_lr(self, epoch: int) -> float:
        self._lr = poly_lr(self.initial_lr, epoch, self.epochs)
        return self._lr

    def step_lr(self, it: int, epoch_elapsed: float) -> float | None:
        return self._lr

    def finished(self, epochs_done: int) -> bool:
        return epochs_done >= self.epochs

    def after_epoch(self, record: dict) -> bool:
        return self.finished(record["epoch"])

    def total_text(self, epochs_done: int, epoch_seconds: float) -> str:
        return str(self.epochs)

    def elapsed(self) -> float:
        return time.time() - self.start_time

    def state_dict(self) -> dict:
        return {"budget_used": self.elapsed(), "budget_loop_offset": 0.0}

    def load_state_dict(self, d: dict) -> None:
        pass


class ClockSchedule:
    """``start_time`` is when the train command started; a resumed run continues the budget where it stopped
    (``budget_used``, ``budget_loop_offset`` in the checkpoint). ``agree`` makes every DDP rank take rank 0's
    decision."""

    def __init__(self, initial_lr: float, budget_seconds: float, start_time: float,
                 reserve_for: Callable[[float | None], float], agree: Callable[[bool], bool] = bool):
        self.initial_lr, self.budget = initial_lr, budget_seconds
        self.start_time, self.reserve_for, self.agree = start_time, reserve_for, agree
        self.used, self.loop_offset, self.ended = 0.0, 0.0, False
        self.clock: BudgetClock | None = None

    def begin(self) -> None:
        self.start_time -= self.used  # a resumed run continues the same budget
        clock = self.clock = BudgetClock(self.budget, self.start_time)
        # a first guess (from the plan's timing) may not take more than half the time left; the measured speed
        # replaces it after 10 steps
        clock.reserve = min(self.reserve_for(None), 0.5 * max(clock.deadline - clock.loop_start, 0.0))
        if self.used:
            clock.loop_start = self.start_time + self.loop_offset
        else:
            self.loop_offset = clock.loop_start - self.start_time

    def epoch_lr(self, epoch: int) -> float:
        return self.clock.lr(self.initial_lr)

    def step_lr(self, it: int, epoch_elapsed: float) -> float | None:
        if it > 0 and self.agree(self.clock.fraction() >= 1):
            return None
        if it > 0 and it % 10 == 0:  # the reserve follows the measured speed within the epoch too
            self.clock.reserve = self.reserve_for(epoch_elapsed / it)
        return self.clock.lr(self.initial_lr)

    def finished(self, epochs_done: int) -> bool:
        return self.ended  # a resume after the last epoch trains no further

    def after_epoch(self, record: dict) -> bool:
        self.clock.reserve = self.reserve_for(record["train_seconds"] / max(record["iterations"], 1))
        self.ended = self.agree(self.clock.fraction() >= 1)
        return self.ended

    def total_text(self, epochs_done: int, epoch_seconds: float) -> str:
        return f"~{self.clock.expected_epochs(epochs_done, epoch_seconds)}"

    def elapsed(self) -> float:
        return time.time() - self.start_time

    def state_dict(self) -> dict:
        return {"budget_used": self.elapsed(), "budget_loop_offset": self.loop_offset, "budget_ended": self.ended}

    def load_state_dict(self, d: dict) -> None:
        self.used = float(d.get("budget_used", 0.0))
        self.loop_offset = float(d.get("budget_loop_offset", 0.0))
        self.ended = bool(d.get("budget_ended", False))

    def report(self, epochs: int, iterations: int) -> str:
        total = self.elapsed()
        return (f"budget {self.budget:.0f}s: training ended after {total:.0f}s "
                f"({100 * total / self.budget:.0f}% of the budget), {epochs} epochs, {iterations} iterations")
