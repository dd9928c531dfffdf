"""One fold's training from start (or resume) to its validated final checkpoint, read top-down:

``train_fold`` (the entry: one process, a torchrun rank, or ``--num-gpus`` starting the ranks) asks ``_decide``
(rank 0, under the fold lock, decides for all: nothing left, finish the validation, or train from scratch or from
``checkpoint_latest.pt``), then calls ``_finish_validation`` or ``_train`` (assemble parts, schedule and
callbacks; ``_fit``, which saves the latest checkpoint on a signal; the final validation). The path to the loop is
``train_fold -> _train -> _fit -> loop.fit`` (tests/test_call_depth.py keeps it at most four calls deep).

A fold is finished only when ``validation/summary.json`` exists (or no validation was asked for): a run killed
during the final validation is completed by ``--resume``, keeping the cases already predicted. SIGTERM/Ctrl-C save
``checkpoint_latest.pt`` (the completed epochs' count with the current weights) and end with one line; under DDP
(torchrun, ``--num-gpus``) the ranks agree after every step whether any was signalled, so all stop at the same step
and rank 0 saves."""
from __future__ import annotations

import json
import signal
import time
from contextlib import nullcontext
from pathlib import Path

from ..core.cpu_share import CpuShare
from ..core.errors import AutosegError
from ..core.jsonio import save_json
from ..core.locks import fold_lock
from ..networks.checkpoint import load_checkpoint, network_from_checkpoint
from ..planner.budget import affordable_at, loop_seconds_per_step
from .config import TrainConfig
from .distributed import (
    ONE_PROCESS,
    DDPSync,
    LaunchEnv,
    Sync,
    elastic_run,
    launch_env,
    process_group,
    rank_device,
    share,
    write_state_digest,
)
from .fit.callbacks import Checkpoints, EpochPrinter, JsonLog, ProgressPlot, ThreadsFollowLoad
from .fit.loop import LoopState, fit
from .fit.parts import Parts, build_parts
from .fit.schedule import ClockSchedule, EpochSchedule, LRSchedule
from .interrupt import StopFlag, TrainingInterrupted
from .setup import FoldSetup
from .validation import probabilities_missing, read_validation, summary_path, validate_fold, validation_reserve

BUDGET_RECORD = "budget.json"  # a budget run's planned against trained steps (``ClockSchedule.record``)

LATEST, FINAL = "checkpoint_latest.pt", "checkpoint_final.pt"


def train_fold(setup: FoldSetup, tc: TrainConfig, resume: bool = False, start_time: float | None = None) -> dict:
    """Train (or with ``resume`` continue or finish) one fold; returns its epochs and validation summary. Under
    torchrun every process calls this (the output folder must be one folder that every node sees); ``--num-gpus N``
    starts N such processes with torch's elastic launcher. Rank 0 (or the one process) holds the fold lock
    throughout, writes the checkpoints and logs and evaluates the validation; every rank trains and predicts its
    share of the held-out cases."""
    start_time = start_time if start_time is not None else time.time()
    env = launch_env()
    if env is not None and tc.num_processes not in (1, env.world_size):
        raise AutosegError(f"--num-gpus {tc.num_processes} under torchrun (WORLD_SIZE={env.world_size}): torchrun "
                           "starts the processes; leave --num-gpus out and set torchrun's --nproc-per-node instead")
    if env is None and tc.num_processes > 1:
        elastic_run(train_fold, (setup, tc, resume, start_time), tc.num_processes)
        return read_validation(setup)
    ranks = env if env is not None and env.world_size > 1 else ONE_PROCESS
    group = process_group(_uses_cuda(tc)) if ranks.world_size > 1 else nullcontext()
    lock = fold_lock(setup.out) if ranks.rank == 0 else nullcontext()
    with group, lock:
        kind, value = _decide(setup, tc, resume, ranks)
        if kind == "done":
            return value if ranks.rank == 0 else {}
        if kind == "validate":
            return _finish_validation(setup, tc, ranks)
        return _train(setup, tc, value, start_time, ranks)


def _decide(setup: FoldSetup, tc: TrainConfig, resume: bool, ranks: LaunchEnv) -> tuple[str, object]:
    """Rank 0 decides under the fold lock (``_prepare``) and tells the other ranks, which take its decision (or
    its error) as theirs; rank 0 alone keeps a finished fold's result."""
    if ranks.world_size == 1:
        return _prepare(setup, tc, resume)
    if ranks.rank != 0:
        decision = share(None)
        if decision[0] == "error":
            raise AutosegError(decision[1])
        return decision
    try:
        decision = _prepare(setup, tc, resume, restarted=ranks.restart > 0)
    except AutosegError as e:
        share(("error", str(e)))
        raise
    share((decision[0], decision[1] if decision[0] == "train" else None))
    return decision


def _prepare(setup: FoldSetup, tc: TrainConfig, resume: bool, restarted: bool = False) -> tuple[str, object]:
    """Under the fold lock: ('done', result) when nothing is left to train, ('validate', None) when only the
    final validation is, else ('train', the checkpoint to resume from or None). A group restarted by torchrun
    (``--max-restarts``) resumes whatever its first attempt left, without --resume."""
    remove_temp_files(setup.out)
    status = fold_status(setup, tc)
    resume = resume or (restarted and status != "new")
    if resume and status == "finished":
        (setup.out / LATEST).unlink(missing_ok=True)  # a kill between writing final and removing latest
        print(f"{setup.out}: already finished ({FINAL}); nothing to resume", flush=True)
        return "done", read_validation(setup)
    if resume and status == "validate":
        return "validate", None
    if resume and status != "resume":
        raise AutosegError(f"{setup.out}: --resume, but there is no {LATEST} to resume from; run the same "
                           "command without --resume to start this fold")
    if not resume and status != "new":
        _start_over(setup)
    return "train", (setup.out / LATEST if resume else None)


def fold_status(setup: FoldSetup, tc: TrainConfig) -> str:
    """'resume' (a latest checkpoint newer than any final one), 'validate' (trained, validation missing),
    'finished', or 'new'."""
    latest, final = setup.out / LATEST, setup.out / FINAL
    if latest.is_file() and not (final.is_file() and final.stat().st_mtime_ns >= latest.stat().st_mtime_ns):
        return "resume"
    if final.is_file():
        needs = bool(setup.val_cases) and tc.final_validation and (not summary_path(setup).is_file() or (
            tc.save_validation_probabilities and bool(probabilities_missing(setup))))
        return "validate" if needs else "finished"
    return "new"


def remove_temp_files(folder: Path) -> None:
    """Hidden temporary files left by a killed write (``.name.XXXX.ext``): never read, removed before we start."""
    for d in (folder, folder / "validation"):
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(".") and p.is_file():
                    p.unlink()


def _start_over(setup: FoldSetup) -> None:
    """A new training replaces the fold's earlier results: its final checkpoint and validation (whose summary
    would otherwise mark the new training finished) are removed first."""
    import shutil

    print(f"note: {setup.out} was trained before; starting over (use --resume to continue instead)", flush=True)
    for name in (FINAL, LATEST):
        (setup.out / name).unlink(missing_ok=True)
    shutil.rmtree(setup.out / "validation", ignore_errors=True)


def _train(setup: FoldSetup, tc: TrainConfig, resume_from: Path | None, start_time: float,
           ranks: LaunchEnv) -> dict:
    """The training of one process (rank), then its share of the final validation: rank 0 writes the
    checkpoints and logs, and evaluates the validation."""
    parts, schedule, state = _assemble(setup, tc, resume_from, start_time, ranks)
    main = parts.sync.is_main
    callbacks, ckpts = _callbacks(setup, tc, parts, schedule)
    if main:
        _write_config(setup, tc, parts)
        print(_header(setup, tc, parts), flush=True)
    with StopFlag() as stop:
        _fit(setup, tc, parts, schedule, state, callbacks, ckpts, stop)
        parts.close()
        write_state_digest(parts.net, ranks.rank)
        result = {"epochs": state.epoch, "best_ema_pseudo_dice": state.best_ema}
        if setup.val_cases and tc.final_validation:
            summary = validate_fold(setup, parts.net, parts.device, check_stop=_validation_stop(stop),
                                    save_probabilities=tc.save_validation_probabilities, rank=ranks.rank,
                                    world_size=ranks.world_size)
            if main:
                result["validation"] = summary
        if not main:
            return result
    if isinstance(schedule, ClockSchedule):
        print(schedule.report(state.epoch, sum(r.get("iterations", tc.iters_per_epoch) for r in state.log)),
              flush=True)
        save_json(schedule.record(state.log), setup.out / BUDGET_RECORD)  # planned vs trained steps, issue 25
    return result


def _fit(setup: FoldSetup, tc: TrainConfig, parts: Parts, schedule: LRSchedule, state: LoopState,
         callbacks: list, ckpts: Checkpoints, stop: StopFlag) -> None:
    """Run the loop; on a signal, save checkpoint_latest.pt and end with a one-line message."""
    def check() -> None:
        # under DDP a signal may reach some ranks only: all stop at the same step when any was signalled
        if parts.sync.any(stop.requested):
            raise TrainingInterrupted(stop.signum or signal.SIGTERM)

    try:
        fit(parts, schedule, state, callbacks, tc.iters_per_epoch, tc.val_iters, tc.ema_alpha,
            setup.metric_classes, check)
    except TrainingInterrupted as e:
        if parts.sync.is_main:
            ckpts.save(state, LATEST)
        saver = "" if parts.sync.is_main else f" (rank {parts.sync.rank}; rank 0 saves)"
        msg = (f"interrupted by {_signame(e.signum)}{saver}: {setup.out / LATEST} saved after epoch {state.epoch}; "
               "run the same command with --resume to continue")
        raise TrainingInterrupted(e.signum, msg) from None


def _assemble(setup: FoldSetup, tc: TrainConfig, resume_from: Path | None, start_time: float,
              ranks: LaunchEnv) -> tuple[Parts, LRSchedule, LoopState]:
    """This rank's device and DDP agreement, the parts, the schedule and the loop state (a resumed checkpoint's
    weights, optimiser, schedule and epochs)."""
    from ..core.device import resolve_device

    device = rank_device(resolve_device(tc.device), ranks.local_rank, ranks.world_size)
    sync = DDPSync(ranks.rank, ranks.world_size, device) if ranks.world_size > 1 else Sync()
    ck = load_checkpoint(resume_from, device) if resume_from else None
    say = print if sync.is_main else (lambda *a, **k: None)
    parts = build_parts(setup, tc, sync, device, int(ck["epoch"]) if ck else 0, lambda s: say(s, flush=True))
    schedule = make_schedule(setup, tc, parts, start_time)
    state = LoopState()
    if ck:
        was = ck.get("train_config", {}).get("optimizer", "sgd")
        if was != tc.optimizer:
            raise AutosegError(f"{resume_from}: this run was trained with the {was} optimiser; resume it with "
                               f"--optimizer {was} (its state cannot continue in {tc.optimizer})")
        state = restore(ck, parts, schedule)
        say(f"resuming {setup.config} fold {setup.fold} at epoch {state.epoch}", flush=True)
    return parts, schedule, state


def make_schedule(setup: FoldSetup, tc: TrainConfig, parts: Parts, start_time: float) -> LRSchedule:
    if not tc.budget_seconds:
        return EpochSchedule(tc.initial_lr, tc.epochs, start_time)

    def reserve(step: float | None) -> float:
        return validation_reserve(setup, tc.val_iters, tc.final_validation, parts.local_batch, step)

    b = setup.cfg.budget
    same_batch = b is not None and parts.batch_size * parts.sync.world_size == setup.cfg.batch_size
    planned = (float(b.seconds_per_step), int(b.min_steps)) if same_batch and b.seconds_per_step else None
    return ClockSchedule(tc.initial_lr, tc.budget_seconds, start_time, reserve, parts.sync.agree, planned,
                         (lambda line: print(line, flush=True)) if parts.sync.is_main else None,
                         int(b.expected_steps) if planned else None,
                         (lambda speed: _describe(affordable_at(b, speed), speed)) if planned else None,
                         loop_seconds_per_step(planned[0]) if planned else None)


def _describe(c, speed: float) -> str | None:
    """A candidate of the plan's budget record, as the faster-than-planned note names it."""
    if c is None:
        return None
    return (f"spacing {c.spacing}, patch {c.patch_size}, batch {c.batch_size}, {c.base_features} base features: "
            f"about {c.steps_in_budget / speed:.0f} steps at this speed")


def restore(ck: dict, parts: Parts, schedule: LRSchedule) -> LoopState:
    parts.net.load_state_dict(ck["network_weights"])
    parts.stepper.optimizer.load_state_dict(ck["optimizer_state"])
    if parts.stepper.scaler and ck.get("grad_scaler_state"):
        parts.stepper.scaler.load_state_dict(ck["grad_scaler_state"])
    schedule.load_state_dict(ck)
    ema = float(ck["ema"])
    log = json.loads(ck["log"])[: int(ck["epoch"])]
    return LoopState(int(ck["epoch"]), log, None if ema < 0 else ema, float(ck["best_ema"]))


def checkpoint_state(setup: FoldSetup, tc: TrainConfig, parts: Parts, schedule: LRSchedule, state: LoopState) -> dict:
    """Plain values and state dicts only (``torch.load(weights_only=True)``); the keys are those of earlier
    checkpoints, which still load."""
    scaler = parts.stepper.scaler
    return {"network_weights": parts.net.state_dict(), "optimizer_state": parts.stepper.optimizer.state_dict(),
            "grad_scaler_state": scaler.state_dict() if scaler else None, "epoch": state.epoch,
            "log": json.dumps(state.log), "best_ema": state.best_ema,
            "ema": state.ema if state.ema is not None else -1.0, "architecture": setup.architecture,
            "train_config": tc.to_dict(), "configuration": setup.config, "fold": setup.fold,
            "batch_size": parts.batch_size, **schedule.state_dict()}


def _callbacks(setup: FoldSetup, tc: TrainConfig, parts: Parts,
               schedule: LRSchedule) -> tuple[list, Checkpoints]:
    """Rank 0's printed line, log.jsonl, checkpoints and progress plot; on a CPU, every rank's thread count
    following the load of other processes. The checkpoints come back apart too: an interruption saves one."""
    main = parts.sync.is_main

    def state_fn(s: LoopState) -> dict:
        return checkpoint_state(setup, tc, parts, schedule, s)

    ckpts = Checkpoints(setup.out, state_fn, tc.save_every)
    callbacks = [EpochPrinter(schedule), JsonLog(setup.out / "log.jsonl"), ckpts,
                 ProgressPlot(setup.out / "progress.png")] if main else []
    if parts.device.type == "cpu":
        say = (lambda s: print(s, flush=True)) if main else (lambda s: None)
        callbacks.append(ThreadsFollowLoad(CpuShare(), say))
    return callbacks, ckpts


def _write_config(setup: FoldSetup, tc: TrainConfig, parts: Parts) -> None:
    save_json({"train_config": tc.to_dict(), "configuration": setup.config, "fold": setup.fold,
               "batch_size": parts.batch_size, "patch_size": setup.cfg.patch_size,
               "architecture": setup.architecture, "train_cases": setup.train_cases, "val_cases": setup.val_cases,
               "device": str(parts.device), "world_size": parts.sync.world_size}, setup.out / "config.json")


def _header(setup: FoldSetup, tc: TrainConfig, parts: Parts) -> str:
    ddp = f" x {parts.sync.world_size} processes (DDP)" if parts.sync.world_size > 1 else ""
    sched = (f"a budget of {tc.budget_seconds:.0f}s (about {tc.epochs} epochs x {tc.iters_per_epoch} iterations; "
             f"the learning rate follows the clock)" if tc.budget_seconds else
             f"{tc.epochs} epochs x {tc.iters_per_epoch} iterations")
    sched += f", {tc.optimizer} from lr {tc.initial_lr:g}"
    return (f"training {setup.config} fold {setup.fold}: {len(setup.train_cases)} train / {len(setup.val_cases)} "
            f"val cases, patch {setup.cfg.patch_size}, batch {parts.batch_size}, {sched}, device "
            f"{parts.device}{ddp}, {parts.workers} data worker(s)")


def _finish_validation(setup: FoldSetup, tc: TrainConfig, ranks: LaunchEnv) -> dict:
    """A fold trained to its final checkpoint whose validation was interrupted: each rank predicts its share of
    the cases not yet predicted, and rank 0 evaluates them all."""
    from ..core.device import resolve_device

    device = rank_device(resolve_device(tc.device), ranks.local_rank, ranks.world_size)
    if ranks.rank == 0:
        print(f"{setup.out}: trained; finishing the final validation that was interrupted", flush=True)
    net = network_from_checkpoint(load_checkpoint(setup.out / FINAL, device), device)
    with StopFlag() as stop:
        summary = validate_fold(setup, net, device, skip_done=True, check_stop=_validation_stop(stop),
                                save_probabilities=tc.save_validation_probabilities, rank=ranks.rank,
                                world_size=ranks.world_size)
    return {"validation": summary} if ranks.rank == 0 else {}


def _validation_stop(stop: StopFlag):
    def check() -> None:
        if stop.requested:
            raise TrainingInterrupted(stop.signum, f"interrupted by {_signame(stop.signum)} during the final "
                                                   f"validation (the trained model is in {FINAL}); run the same "
                                                   "command with --resume to finish it")
    return check


def _uses_cuda(tc: TrainConfig) -> bool:
    import torch

    return tc.device != "cpu" and torch.cuda.is_available()


def _signame(signum: int) -> str:
    return signal.Signals(signum).name
