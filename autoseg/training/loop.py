"""The training loop, assembled from parts: network, loss, optimiser, data streams, checkpoints, logging.

One epoch = ``iters_per_epoch`` optimiser steps on augmented patches, then ``val_iters`` batches of un-augmented
validation patches whose summed true/false positives give a pseudo-Dice per class; its exponential moving average
picks ``checkpoint_best.pt``. At the end the fold's held-out cases are predicted at full resolution and evaluated.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..io.dataset import load_dataset
from ..networks import build_network
from ..planner.plans import Plans
from ..utils import AutosegError, save_json
from ..workspace import Workspace
from .checkpoint import load_checkpoint, save_checkpoint
from .config import BudgetClock, TrainConfig, poly_lr
from .data import BatchStream, make_loader
from .losses import DeepSupervisionLoss, DiceCELoss
from .splits import load_fold

SAVE_LATEST_SECONDS = 600  # also save checkpoint_latest.pt at least this often (long CPU epochs)


def default_workers(device: torch.device) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(cores - 1, 12))
    return 1 if cores >= 2 else 0


def _autocast_dtype(device: torch.device):
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _pseudo_dice_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """(3, K-1) array of TP, FP, FN per foreground class, summed over the batch."""
    pred = logits.argmax(1)
    tgt = target[:, 0]
    out = np.zeros((3, num_classes - 1))
    for k in range(1, num_classes):
        p, t = pred == k, tgt == k
        out[0, k - 1] = (p & t).sum().item()
        out[1, k - 1] = (p & ~t).sum().item()
        out[2, k - 1] = (~p & t).sum().item()
    return out


def plot_progress(log: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils import atomic_write_bytes

    ep = [r["epoch"] for r in log]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    ax[0, 0].plot(ep, [r["train_loss"] for r in log], label="train")
    ax[0, 0].plot(ep, [r["val_loss"] for r in log], label="val")
    ax[0, 0].set_title("loss (Dice + CE)")
    ax[0, 1].plot(ep, [np.nanmean(r["pseudo_dice"]) for r in log], label="pseudo-Dice")
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


class Trainer:
    """One fold's training. With ``world_size > 1`` it is one of several DistributedDataParallel processes: each
    gets its own device, a share of the global batch and its own data seed; rank 0 logs, plots, saves checkpoints
    and validates, and pseudo-Dice counts are summed over all ranks so every rank takes the same decisions."""

    def __init__(self, ws: Workspace, config: str, fold: str, tc: TrainConfig, rank: int = 0, world_size: int = 1,
                 start_time: float | None = None):
        from ..inference.predictor import resolve_device

        self.start_time = start_time if start_time is not None else time.time()
        self.budget_used = 0.0  # seconds of the budget spent before a resume
        self.budget_loop_offset = 0.0
        self.ws, self.config, self.fold, self.tc = ws, config, str(fold), tc
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.plans = Plans.load(ws.require_plans().plans)
        self.cfg = self.plans.configuration(config)
        self.ds = load_dataset(self.plans.dataset_dir)
        if self.fold != "all" and not ws.splits.is_file():
            raise AutosegError(f"{ws.splits}: no splits; re-run `autoseg plan` (it writes the 5-fold split)")
        self.train_cases, self.val_cases = load_fold(ws.splits, self.fold, self.ds.cases)
        self.out = ws.fold_dir(config, self.fold)
        self.device = resolve_device(tc.device)
        if world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", rank)
            torch.cuda.set_device(self.device)
        self.num_classes = self.plans.num_classes
        arch = self.cfg.architecture
        self.arch = {"network_class_name": arch.network_class_name, "arch_kwargs": dict(arch.arch_kwargs)}
        self.net = build_network(arch.network_class_name, dict(arch.arch_kwargs)).to(self.device)
        self.model: torch.nn.Module = self.net
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net, device_ids=[rank] if self.device.type == "cuda" else None)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=tc.initial_lr, momentum=tc.momentum,
                                   weight_decay=tc.weight_decay, nesterov=True)
        self.amp_dtype = _autocast_dtype(self.device) if tc.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        n_out = len(arch.arch_kwargs["strides"]) - 1
        self.loss = DeepSupervisionLoss(DiceCELoss(batch_dice=self.cfg.batch_dice), n_out)
        self.batch_size = tc.batch_size or self.cfg.batch_size  # global batch, split over the ranks
        self.local_batch = max(1, -(-self.batch_size // world_size))
        self.start_epoch = 0
        self.log: list[dict] = []
        self.best_ema = -1.0
        self.ema: float | None = None

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict:
        return {"network_weights": self.net.state_dict(), "optimizer_state": self.opt.state_dict(),
                "grad_scaler_state": self.scaler.state_dict() if self.scaler else None,
                "epoch": epoch, "log": json.dumps(self.log), "best_ema": self.best_ema,
                "ema": self.ema if self.ema is not None else -1.0, "architecture": self.arch,
                "train_config": self.tc.to_dict(), "configuration": self.config, "fold": self.fold,
                "batch_size": self.batch_size, "budget_used": time.time() - self.start_time,
                "budget_loop_offset": self.budget_loop_offset}

    def resume(self) -> bool:
        path = self.out / "checkpoint_latest.pt"
        if not path.is_file():
            return False
        ck = load_checkpoint(path, self.device)
        self.net.load_state_dict(ck["network_weights"])
        self.opt.load_state_dict(ck["optimizer_state"])
        if self.scaler and ck.get("grad_scaler_state"):
            self.scaler.load_state_dict(ck["grad_scaler_state"])
        self.start_epoch = int(ck["epoch"])
        self.log = json.loads(ck["log"])
        self.best_ema = float(ck["best_ema"])
        self.ema = None if ck["ema"] < 0 else float(ck["ema"])
        self.budget_used = float(ck.get("budget_used", 0.0))
        self.budget_loop_offset = float(ck.get("budget_loop_offset", 0.0))
        print(f"resuming {self.config} fold {self.fold} at epoch {self.start_epoch}", flush=True)
        return True

    # -- one step ------------------------------------------------------------------------------------------
    def _forward_loss(self, x: torch.Tensor, y: torch.Tensor):
        dtype = self.amp_dtype or torch.float32
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None):
            out = self.model(x)
            loss = self.loss(out, y)
        return out, loss

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        _, loss = self._forward_loss(x, y)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
            self.opt.step()
        return float(loss.detach())

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        tc = self.tc
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and not self.resume() and (self.out / "checkpoint_final.pt").is_file():
            if self.is_main:
                print(f"{self.out}: already finished (checkpoint_final.pt); nothing to resume", flush=True)
            return read_validation(self.ws, self.config, self.fold)
        if self.is_main:
            save_json({"train_config": tc.to_dict(), "configuration": self.config, "fold": self.fold,
                   "batch_size": self.batch_size, "patch_size": self.cfg.patch_size, "architecture": self.arch,
                   "train_cases": self.train_cases, "val_cases": self.val_cases,
                   "device": str(self.device), "world_size": self.world_size}, self.out / "config.json")
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        workers = tc.num_workers if tc.num_workers is not None else default_workers(self.device)
        folder = self.ws.preprocessed(self.config)
        aniso3d = self.cfg.dim == 3 and self.cfg.resampling_data["separate_z"]
        val_cases = self.val_cases or self.train_cases
        seed = (tc.seed * 1000 + self.start_epoch) * 64 + self.rank
        train_stream = BatchStream(folder, self.train_cases, self.cfg.patch_size, self.local_batch, aniso3d, True,
                                   seed, tc.oversample_foreground)
        val_stream = BatchStream(folder, val_cases, self.cfg.patch_size, self.local_batch, aniso3d, False,
                                 (tc.seed * 1000 + 999) * 64 + self.rank, tc.oversample_foreground)
        pin = self.device.type == "cuda"
        train_iter = iter(make_loader(train_stream, workers, pin))
        val_iter = iter(make_loader(val_stream, min(workers, 1), pin))
        clock = None
        if tc.budget_seconds:
            self.start_time -= self.budget_used  # a resumed run continues the same budget
            clock = BudgetClock(tc.budget_seconds, self.start_time)
            # a first guess (from the plan's timing) may not take more than half the time left; the measured
            # speed replaces it after 10 steps
            clock.reserve = min(self._validation_reserve(None), 0.5 * max(clock.deadline - clock.loop_start, 0.0))
            if self.budget_used:
                clock.loop_start = self.start_time + self.budget_loop_offset
            else:
                self.budget_loop_offset = clock.loop_start - self.start_time
        if self.is_main:
            ddp = f" x {self.world_size} processes (DDP)" if self.world_size > 1 else ""
            sched = (f"a budget of {tc.budget_seconds:.0f}s (about {tc.epochs} epochs x {tc.iters_per_epoch} "
                     f"iterations; the learning rate follows the clock)" if clock else
                     f"{tc.epochs} epochs x {tc.iters_per_epoch} iterations")
            print(f"training {self.config} fold {self.fold}: {len(self.train_cases)} train / {len(self.val_cases)} "
                  f"val cases, patch {self.cfg.patch_size}, batch {self.batch_size}, {sched}, device "
                  f"{self.device}{ddp}, {workers} data worker(s)", flush=True)
        last_save = time.time()
        epoch = self.start_epoch
        while True:
            if clock is None and epoch >= tc.epochs:
                break
            self._epoch(epoch, train_iter, val_iter, clock)
            epoch += 1
            if clock is not None:
                last = self.log[-1]
                clock.reserve = self._validation_reserve(last["train_seconds"] / max(last["iterations"], 1))
                # the last epoch stops mid-way when the time is up (every rank takes rank 0's decision)
                done = self._all_agree(clock.fraction() >= 1)
                if done:
                    break
            due = epoch % tc.save_every == 0 or time.time() - last_save > SAVE_LATEST_SECONDS
            if self.is_main and due and (clock is not None or epoch < tc.epochs):
                save_checkpoint(self.state(epoch), self.out / "checkpoint_latest.pt")
                last_save = time.time()
        del train_iter, val_iter
        result = {"epochs": epoch, "best_ema_pseudo_dice": self.best_ema}
        if not self.is_main:
            return result
        save_checkpoint(self.state(epoch), self.out / "checkpoint_final.pt")
        if (self.out / "checkpoint_latest.pt").is_file():
            os.remove(self.out / "checkpoint_latest.pt")
        if self.val_cases and tc.final_validation:
            result["validation"] = self.validate()
        if clock is not None:
            total = time.time() - self.start_time
            print(f"budget {tc.budget_seconds:.0f}s: training ended after {total:.0f}s "
                  f"({100 * total / tc.budget_seconds:.0f}% of the budget), {epoch} epochs, "
                  f"{sum(r.get('iterations', tc.iters_per_epoch) for r in self.log)} iterations", flush=True)
        return result

    def _all_agree(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def _validation_reserve(self, step: float | None) -> float:
        """Seconds to keep for the last epoch's validation patches, the final checkpoint and the full-resolution
        validation of the held-out cases, from the planned step time or, once steps have run, the measured one (a
        forward pass of one tile costs about a third of a training step per sample; mirroring multiplies the passes
        by 2**dim)."""
        from ..planner.budget import final_validation_seconds, tiles_per_case

        if step is None and self.cfg.budget:
            step = self.cfg.budget["seconds_per_step"] * self.local_batch / self.cfg.batch_size
        # the last epoch's validation patches run after its final training step
        patches = self.tc.val_iters * step / 2 if step is not None else 0.0
        if not (self.val_cases and self.tc.final_validation) or step is None:
            return 2.0 + patches
        dim = self.cfg.dim
        shape = list(self.plans.original_median_shape_after_transp)
        med = [m * s0 / s1 for m, s0, s1 in zip(shape[-dim:], self.plans.original_median_spacing_after_transp[-dim:],
                                                 self.cfg.spacing)]
        whole = shape[:1] + med if dim == 2 else med
        return 2.0 + patches + 1.2 * final_validation_seconds(
            step, self.local_batch, len(self.val_cases), tiles_per_case(whole, self.cfg.patch_size, dim), 2 ** dim)

    def _epoch(self, epoch: int, train_iter, val_iter, clock: BudgetClock | None = None) -> None:
        tc = self.tc
        lr = poly_lr(tc.initial_lr, epoch, tc.epochs) if clock is None else clock.lr(tc.initial_lr)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.net.train()
        t0 = time.time()
        wait = 0.0
        losses = []
        for it in range(tc.iters_per_epoch):
            if clock is not None:
                if it > 0 and self._all_agree(clock.fraction() >= 1):
                    break
                if it > 0 and it % 10 == 0:  # the reserve follows the measured speed within the epoch too
                    clock.reserve = self._validation_reserve((time.time() - t0) / it)
                for g in self.opt.param_groups:
                    g["lr"] = clock.lr(tc.initial_lr)
            tw = time.time()
            x, y = next(train_iter)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            wait += time.time() - tw
            losses.append(self.train_step(x, y))
        train_time = time.time() - t0
        self.net.eval()
        counts = np.zeros((3, self.num_classes - 1))
        val_losses = []
        with torch.no_grad():
            for _ in range(tc.val_iters):
                x, y = next(val_iter)
                x, y = x.to(self.device), y.to(self.device)
                out, loss = self._forward_loss(x, y)
                val_losses.append(float(loss))
                counts += _pseudo_dice_counts(out[0] if isinstance(out, list) else out, y, self.num_classes)
        if self.world_size > 1:
            import torch.distributed as dist

            t = torch.tensor(np.concatenate([counts.ravel(), [np.mean(losses), np.mean(val_losses)]]),
                             dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            t = t.cpu().numpy()
            counts = t[:-2].reshape(counts.shape)
            losses, val_losses = [t[-2] / self.world_size], [t[-1] / self.world_size]
        tp, fp, fn = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            pseudo = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        mean_pd = float(np.nanmean(pseudo)) if np.any(~np.isnan(pseudo)) else 0.0
        self.ema = mean_pd if self.ema is None else tc.ema_alpha * self.ema + (1 - tc.ema_alpha) * mean_pd
        rec = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "val_loss": float(np.mean(val_losses)) if val_losses else float("nan"),
               "pseudo_dice": [None if np.isnan(v) else float(v) for v in pseudo], "ema_pseudo_dice": self.ema,
               "lr": lr, "epoch_seconds": time.time() - t0, "train_seconds": train_time,
               "data_wait_share": wait / max(train_time, 1e-9), "iterations": len(losses),
               "lr_end": float(self.opt.param_groups[0]["lr"]),
               "iters_per_second": len(losses) / max(train_time, 1e-9),
               "elapsed_seconds": time.time() - self.start_time}
        self.log.append(rec)
        improved = self.ema > self.best_ema
        if improved:
            self.best_ema = self.ema
        if not self.is_main:
            return
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if improved:
            save_checkpoint(self.state(epoch + 1), self.out / "checkpoint_best.pt")
        pd_txt = " ".join("-" if v is None else f"{v:.3f}" for v in rec["pseudo_dice"])
        total = f"{tc.epochs}" if clock is None else f"~{clock.expected_epochs(epoch + 1, rec['epoch_seconds'])}"
        print(f"epoch {epoch + 1:4d}/{total}  loss {rec['train_loss']:.4f}  val {rec['val_loss']:.4f}  "
              f"pseudo-Dice [{pd_txt}]  ema {self.ema:.4f}{' *' if improved else '  '}  lr {lr:.5f}  "
              f"{rec['epoch_seconds']:.1f}s ({rec['iters_per_second']:.2f} it/s, data wait "
              f"{100 * rec['data_wait_share']:.0f}%)", flush=True)
        plot_progress(self.log, self.out / "progress.png")

    def validate(self) -> dict:
        """Predict the held-out cases at full resolution and evaluate against their reference labels."""
        from ..evaluation.evaluate import CaseTable, evaluate_cases, summary_table, write_summary
        from ..inference.predictor import Predictor

        self.net.set_deep_supervision(False)
        self.net.eval()
        pred = Predictor(self.plans, self.config, [self.net], [], self.device)
        vdir = self.out / "validation"
        vdir.mkdir(parents=True, exist_ok=True)
        pairs = []
        for case in self.val_cases:
            out = vdir / f"{case}{self.ds.file_ending}"
            pred.predict_files(self.ds.image_files(case), out)
            pairs.append((case, out, self.ds.label_file(case)))
        self.net.set_deep_supervision(True)
        summary = evaluate_cases(pairs, self.plans.labels, CaseTable(self.ds.groups, self.ds.phases))
        write_summary(summary, vdir)
        print(f"validation of {self.config} fold {self.fold} ({len(pairs)} held-out cases, full resolution):")
        print(summary_table(summary), flush=True)
        return summary



def read_validation(ws: Workspace, config: str, fold: str) -> dict:
    p = ws.fold_dir(config, fold) / "validation" / "summary.json"
    return {"validation": json.loads(p.read_text())} if p.is_file() else {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, ws: Workspace, config: str, fold: str, tc: TrainConfig,
                resume: bool, start_time: float) -> None:
    import torch.distributed as dist

    use_cuda = tc.device != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        Trainer(ws, config, fold, tc, rank, world_size, start_time).run(resume)
    finally:
        dist.destroy_process_group()


def train(ws: Workspace, config: str, fold: str, tc: TrainConfig, resume: bool = False,
          start_time: float | None = None) -> dict:
    start_time = start_time if start_time is not None else time.time()
    if tc.num_processes > 1:
        import torch.multiprocessing as mp

        if tc.device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < tc.num_processes:
            raise AutosegError(f"--num-gpus {tc.num_processes} asked for, but torch sees "
                               f"{torch.cuda.device_count()} GPU(s)")
        mp.spawn(_ddp_worker, args=(tc.num_processes, _free_port(), ws, config, fold, tc, resume, start_time),
                 nprocs=tc.num_processes, join=True)
        result = read_validation(ws, config, fold)
    else:
        result = Trainer(ws, config, fold, tc, start_time=start_time).run(resume)
    from ..postprocessing.decide import maybe_decide_postprocessing

    maybe_decide_postprocessing(ws, config)
    return result
