"""The two training schedules behind one interface: the loop asks a schedule for the learning rate (per epoch and
per step), whether the epoch or the training ends, and keeps its state in the checkpoint for a resume.

- ``EpochSchedule``: nnU-Net's poly learning rate over a fixed number of epochs.
- ``ClockSchedule``: training by a wall-clock budget (``BudgetClock``): the poly schedule runs over the fraction of
  the training time used, the last epoch stops mid-way when the time is up, and a reserve for the final checkpoint
  and validation (``reserve_for(step_seconds)``, re-estimated from the measured speed) is kept free.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Protocol

from ..config import BudgetClock, poly_lr


class LRSchedule(Protocol):
    """The learning rate and the end of training, as the loop asks for them (the planner's ``plans.Schedule``
    is a plan's record of the budget's steps, another thing)."""

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


SLOWER_THAN_PLANNED = 1.25  # the timing noise between plans is ~15%
FASTER_THAN_PLANNED = 1 / SLOWER_THAN_PLANNED


class ClockSchedule:
    """``start_time`` is when the train command started; a resumed run continues the budget where it stopped
    (``budget_used``, ``budget_loop_offset`` in the checkpoint). ``agree`` makes every DDP rank take rank 0's
    decision."""

    def __init__(self, initial_lr: float, budget_seconds: float, start_time: float,
                 reserve_for: Callable[[float | None], float], agree: Callable[[bool], bool] = bool,
                 planned: tuple[float, int] | None = None, say: Callable[[str], None] | None = print,
                 plan_expected_steps: int | None = None,
                 affordable_at: Callable[[float], str | None] | None = None,
                 planned_loop_step: float | None = None):
        self.initial_lr, self.budget = initial_lr, budget_seconds
        self.start_time, self.reserve_for, self.agree = start_time, reserve_for, agree
        self.used, self.loop_offset, self.ended = 0.0, 0.0, False
        self.clock: BudgetClock | None = None
        # (seconds per step the plan timed, steps it requires): the first epoch's speed is checked against it
        self.planned, self.say, self.checked, self.epochs_seen = planned, say, False, 0
        # the plan's steps for a fold with a final validation; ``expected_here``: at the plan's timing, the steps
        # this run's own loop time allows (more for fold 'all', which has no final validation to reserve for)
        self.plan_expected_steps, self.expected_here = plan_expected_steps, None
        # ``affordable_at(speed)``: the more detailed configuration of the plan's candidates that would have had its
        # minimum steps with every step ``speed`` times the timed one (described), or None
        self.affordable_at = affordable_at
        # the plan's loop seconds per step (the step with its share of each epoch's validation and bookkeeping)
        self.planned_loop_step = planned_loop_step

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
        if self.planned and self.expected_here is None:
            per_step = self.planned_loop_step or self.planned[0]
            self.expected_here = int(max(clock.deadline - clock.loop_start, 0.0) / per_step)

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
        step = record["train_seconds"] / max(record["iterations"], 1)
        self.clock.reserve = self.reserve_for(step)
        self.ended = self.agree(self.clock.fraction() >= 1)
        self.epochs_seen += 1
        if not self.checked and not self.ended and self.epochs_seen == 2:  # the first epoch includes warm-up
            self.checked = True
            self._check_speed(step)
        return self.ended

    def _check_speed(self, step: float) -> None:
        """Say so once (after the second epoch: the first includes the start-up of the data workers and the
        first passes) when training runs much slower or much faster than the plan's timing (a machine busier or
        idler now than when it was planned): the clock still ends training on time, with fewer or more steps than
        the plan counted on; when faster, which more detailed configuration of the plan's candidates would have
        fitted."""
        if not self.planned or self.say is None:
            return
        planned_step, min_steps = self.planned
        speed = step / planned_step
        if FASTER_THAN_PLANNED <= speed <= SLOWER_THAN_PLANNED:
            return
        steps = max(self.clock.deadline - self.clock.loop_start, 0.0) / step  # the deadline is net of the reserve
        if speed > 1:
            line = (f"note: steps take {step:.3f}s, {speed - 1:.0%} longer than the {planned_step:.3f}s the plan "
                    f"timed (is the machine busier than when it was planned?); the learning rate follows the "
                    f"clock, so training still ends on time, with about {steps:.0f} steps")
            if steps < min_steps:
                line += (f", fewer than the {min_steps} the plan requires: re-plan (`autoseg plan --budget`) while "
                         "the machine is as busy as it will be during training")
        else:
            line = (f"note: steps take {step:.3f}s, {1 - speed:.0%} less than the {planned_step:.3f}s the plan "
                    f"timed (was the machine busier when it was planned?); training ends on time with about "
                    f"{steps:.0f} steps, more than the plan counted on")
            better = self.affordable_at(speed) if self.affordable_at is not None else None
            if better:
                line += (f"; at this speed a more detailed configuration would have fitted ({better}): re-plan "
                         "(`autoseg plan --budget`) on the machine as it is now to train it")
        self.say(line)

    def total_text(self, epochs_done: int, epoch_seconds: float) -> str:
        return f"~{self.clock.expected_epochs(epochs_done, epoch_seconds)}"

    def elapsed(self) -> float:
        return time.time() - self.start_time

    def state_dict(self) -> dict:
        return {"budget_used": self.elapsed(), "budget_loop_offset": self.loop_offset, "budget_ended": self.ended,
                "budget_expected_steps": self.expected_here}

    def load_state_dict(self, d: dict) -> None:
        self.used = float(d.get("budget_used", 0.0))
        self.loop_offset = float(d.get("budget_loop_offset", 0.0))
        self.ended = bool(d.get("budget_ended", False))
        self.expected_here = d.get("budget_expected_steps")

    def record(self, log: list[dict]) -> dict:
        """Planned against trained steps for this run (written to the fold's budget.json; issue 25): the plan's
        timing and its expectation, the steps trained and their measured speed (median over the epochs after the
        first, which includes the start-up), each epoch's seconds per step (how the machine's speed moved during the
        run), and the loop's seconds per step (with each epoch's validation batches, checkpoints and logs)."""
        steps = sum(int(r.get("iterations", 0)) for r in log)
        speeds = [r["train_seconds"] / r["iterations"] for r in log if r.get("iterations")]
        step = statistics.median_high(speeds[1:] or speeds) if speeds else None
        loop = max(time.time() - self.clock.loop_start, 0.0) if self.clock else None
        return {"budget_seconds": self.budget, "elapsed_seconds": round(self.elapsed(), 1),
                "planned_seconds_per_step": self.planned[0] if self.planned else None,
                "plan_expected_steps": self.plan_expected_steps, "expected_steps_here": self.expected_here,
                "trained_steps": steps, "epochs": len(log),
                "trained_seconds_per_step": round(step, 4) if step else None,
                "epoch_seconds_per_step": [round(x, 4) for x in speeds],
                "loop_seconds_per_step": round(loop / steps, 4) if loop and steps else None,
                "steps_vs_expected": round(steps / self.expected_here - 1, 3) if self.expected_here else None}

    def report(self, epochs: int, iterations: int) -> str:
        total = self.elapsed()
        line = (f"budget {self.budget:.0f}s: training ended after {total:.0f}s "
                f"({100 * total / self.budget:.0f}% of the budget), {epochs} epochs, {iterations} iterations")
        if self.expected_here:
            line += (f"; at the plan's timing ({self.planned[0]:.3f}s a step) this run had time for "
                     f"~{self.expected_here} ({iterations / self.expected_here - 1:+.0%})")
        return line
