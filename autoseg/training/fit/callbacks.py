"""What happens after each epoch besides training: the printed line, log.jsonl, progress.png and the best and
latest checkpoints (callbacks of ``autoseg.training.fit.loop.fit`` run on rank 0 only), and, on every rank, the CPU
thread count following the load of other processes."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ...core.faults import fault_point
from ...core.files import atomic_write_bytes
from ...networks.checkpoint import save_checkpoint
from .loop import Callback, LoopState
from .schedule import LRSchedule

SAVE_LATEST_SECONDS = 600  # write checkpoint_latest.pt at least this often (long CPU epochs)
CHEAP_SAVE_SHARE = 0.05  # ... and every epoch while a save costs less than this share of an epoch


class EpochPrinter(Callback):
    def __init__(self, schedule: LRSchedule):
        self.schedule = schedule

    def on_epoch_end(self, state: LoopState, rec: dict, improved: bool, last: bool) -> None:
        pd_txt = " ".join("-" if v is None else f"{v:.3f}" for v in rec["pseudo_dice"])
        total = self.schedule.total_text(state.epoch, rec["epoch_seconds"])
        print(f"epoch {rec['epoch']:4d}/{total}  loss {rec['train_loss']:.4f}  val {rec['val_loss']:.4f}  "
              f"pseudo-Dice [{pd_txt}]  ema {state.ema:.4f}{' *' if improved else '  '}  lr {rec['lr']:.5f}  "
              f"{rec['epoch_seconds']:.1f}s ({rec['iters_per_second']:.2f} it/s, data wait "
              f"{100 * rec['data_wait_share']:.0f}%)", flush=True)


class JsonLog(Callback):
    """log.jsonl, one line per epoch. At the start it is rewritten from the loop state (empty, or the epochs a
    resumed checkpoint holds), so epochs run after that checkpoint by a killed run are not kept twice."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_begin(self, state: LoopState) -> None:
        text = "".join(json.dumps(r) + "\n" for r in state.log)

        def _w(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(text)

        atomic_write_bytes(self.path, _w)

    def on_epoch_end(self, state: LoopState, rec: dict, improved: bool, last: bool) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")


class ProgressPlot(Callback):
    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, state: LoopState, rec: dict, improved: bool, last: bool) -> None:
        plot_progress(state.log, self.path)


class Checkpoints(Callback):
    """checkpoint_latest.pt every epoch while that is cheap (under 5% of an epoch), otherwise every ``save_every``
    epochs or 10 minutes, and after the last epoch (so a kill while the final checkpoint is written loses
    nothing); then checkpoint_best.pt when the moving average improves. At the end, checkpoint_final.pt, and the
    latest checkpoint is removed."""

    def __init__(self, out: Path, state_fn: Callable[[LoopState], dict], save_every: int):
        self.out, self.state_fn, self.save_every = out, state_fn, save_every
        self.last_save, self.save_seconds = time.time(), 0.0

    def on_epoch_end(self, state: LoopState, rec: dict, improved: bool, last: bool) -> None:
        cheap = self.save_seconds <= CHEAP_SAVE_SHARE * rec["epoch_seconds"]
        if last or cheap or state.epoch % self.save_every == 0 or time.time() - self.last_save > SAVE_LATEST_SECONDS:
            self.save(state, "checkpoint_latest.pt")
        if improved:
            self.save(state, "checkpoint_best.pt")

    def on_train_end(self, state: LoopState) -> None:
        self.save(state, "checkpoint_final.pt")
        (self.out / "checkpoint_latest.pt").unlink(missing_ok=True)

    def save(self, state: LoopState, name: str) -> None:
        t0 = time.time()
        save_checkpoint(self.state_fn(state), self.out / name, before_rename=lambda: fault_point(name[:-3]))
        if name == "checkpoint_latest.pt":
            self.save_seconds, self.last_save = time.time() - t0, time.time()


def plot_progress(log: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in log]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    ax[0, 0].plot(ep, [r["train_loss"] for r in log], label="train")
    ax[0, 0].plot(ep, [r["val_loss"] for r in log], label="val")
    ax[0, 0].set_title("loss (Dice + CE)")
    ax[0, 1].plot(ep, [np.nanmean(np.array(r["pseudo_dice"], float)) for r in log], label="pseudo-Dice")
    ax[0, 1].plot(ep, [r["ema_pseudo_dice"] for r in log], label="moving average")
    ax[0, 1].set_title("pseudo-Dice (validation patches)")
    ax[1, 0].plot(ep, [r["lr"] for r in log])
    ax[1, 0].set_title("learning rate")
    ax[1, 1].plot(ep, [r["epoch_seconds"] for r in log], label="epoch")
    ax[1, 1].plot(ep, [r["epoch_seconds"] * r["data_wait_share"] for r in log], label="waiting for data")
    ax[1, 1].set_title("seconds")
    for a in ax.ravel():
        a.set_xlabel("epoch")
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


class ThreadsFollowLoad(Callback):
    """On a CPU, compute with the cores other processes leave free, re-measured over each epoch: two processes
    that each compute with every core of a small machine slow each other far more than twofold."""

    def __init__(self, share, say: Callable[[str], None]):
        self.share, self.say = share, say

    def on_epoch_end(self, state: LoopState, rec: dict, improved: bool, last: bool) -> None:
        import torch

        from ...core.cpu_share import threads_beside

        others = self.share.others()
        threads = threads_beside(others, self.share.cores)
        if threads != torch.get_num_threads() and not last:
            self.say(f"note: other processes kept {others:.1f} of {self.share.cores} cores busy during epoch "
                     f"{rec['epoch']}; computing with {threads} thread(s) from now on")
            torch.set_num_threads(threads)

