"""`autoseg submit`: fan a study (or a prediction) out as jobs on SLURM or a local pool, track them in RUN/jobs/,
and resubmit the ones that failed."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import AutosegError
from ..core.progress import format_table
from ..io.workspace import Workspace
from ..postprocessing.best import fold_count
from . import local, slurm
from .graph import default_after_folds, predict_jobs, preprocessing_done, train_jobs
from .jobs import ACTIVE, RERUNNABLE, Job, JobSet, failed_summary, prepare_attempt

SCHEDULERS = ("slurm", "local")
DEFAULT_FOLDS = ("0", "1", "2", "3", "4")  # nnU-Net's five, where the run has no splits.json yet


def every_fold(run_dir: str | Path) -> list[str]:
    """The folds of the run's splits.json: five as planned, or as many as a user's own splits file holds."""
    ws = Workspace.at(run_dir)
    return [str(i) for i in range(fold_count(ws))] if ws.splits.is_file() else list(DEFAULT_FOLDS)


def submit_training(run_dir: str | Path, configs: list[str], folds: list[str], scheduler: str, options: dict, *,
                    train_args: list[str] | None = None, after_folds: str | None = None, dry_run: bool = False,
                    wait: bool = False, parser: argparse.ArgumentParser | None = None) -> JobSet:
    """Preprocess (unless done), train every configuration x fold, then ``after_folds`` per configuration.
    ``parser``: the `autoseg` command line the jobs run, to check their arguments now (see ``graph.train_jobs``)."""
    from ..planner.plans import Plans

    ws = Workspace.at(run_dir).require_plans()
    plans = Plans.load(ws.plans)
    for c in configs:
        plans.configuration(c)
    jobs = train_jobs(ws, configs, folds, list(train_args or []), after_folds,
                      preprocess=not preprocessing_done(ws, configs), parser=parser)
    return _launch(JobSet(ws.root, "train", scheduler, options, jobs), dry_run, wait)


def submit_prediction(run_dir: str | Path, inp: str | Path, out: str | Path, num_parts: int, scheduler: str,
                      options: dict, *, predict_args: list[str] | None = None, dry_run: bool = False,
                      wait: bool = False, parser: argparse.ArgumentParser | None = None) -> JobSet:
    """One `predict --num-parts N --part-id K --continue` job per part, all writing into ``out``."""
    ws = Workspace.at(run_dir).require_plans()
    if not Path(inp).exists():
        raise AutosegError(f"{inp}: input not found (give an image file or a folder of <case>_0000 files)")
    jobs = predict_jobs(ws, Path(inp).resolve(), Path(out).resolve(), num_parts, list(predict_args or []),
                        parser=parser)
    return _launch(JobSet(ws.root, "predict", scheduler, options, jobs), dry_run, wait)


def _launch(js: JobSet, dry_run: bool, wait: bool) -> JobSet:
    if js.scheduler not in SCHEDULERS:
        raise AutosegError(f"--scheduler {js.scheduler}: choose one of {', '.join(SCHEDULERS)}")
    if js.scheduler == "slurm":
        slurm.check_options(js.options, need_sbatch=not dry_run)
    if dry_run:
        _print_plan(js)
        return js
    _refuse_if_active(js.run_dir, js.kind)
    _run_jobs(js, js.jobs)
    return _finish(js, wait)


def resubmit_failed(run_dir: str | Path, kind: str = "train", dry_run: bool = False, wait: bool = False) -> JobSet:
    """Submit again only the jobs that failed or were cancelled because a dependency failed."""
    js = refresh(run_dir, kind)
    todo = [j for j in js.jobs if j.state in RERUNNABLE]
    if not todo:
        print(f"submit: no failed {kind} jobs in {js.path}", flush=True)
        return js
    if dry_run:
        _print_plan(js, todo)
        return js
    _run_jobs(js, todo)
    return _finish(js, wait)


def refresh(run_dir: str | Path, kind: str = "train") -> JobSet:
    """The saved submission with every job's state brought up to date."""
    js = JobSet.load(Workspace.at(run_dir).root, kind)
    (slurm.refresh if js.scheduler == "slurm" else local.refresh)(js)
    js.save()
    return js


def status(run_dir: str | Path, kind: str = "train") -> JobSet:
    js = refresh(run_dir, kind)
    print(status_table(js), flush=True)
    return js


def _run_jobs(js: JobSet, todo: list[Job]) -> None:
    for j in todo:
        prepare_attempt(js, j)
    if js.scheduler == "local":
        try:
            local.run(js, todo)
        except KeyboardInterrupt:
            raise AutosegError(f"interrupted: the running jobs were stopped; state in {js.path}; continue with "
                               f"autoseg submit {js.run_dir} --resubmit-failed") from None
        return
    try:
        for j in todo:  # the list is in dependency order
            slurm.submit(js, j, [js.job(d).job_id for d in j.depends_on if js.job(d).state in ACTIVE])
            print(f"submit: {j.name} -> SLURM job {j.job_id} (log {j.log})", flush=True)
    except BaseException:
        _withdraw(js, todo)  # all or nothing: no half-submitted graph is left in the queue
        raise
    finally:
        js.save()


def _withdraw(js: JobSet, todo: list[Job]) -> None:
    slurm.cancel([j.job_id for j in todo if j.job_id and j.state in ACTIVE])
    for j in todo:
        j.state, j.note = "cancelled", "its submission was stopped"


def _finish(js: JobSet, wait: bool) -> JobSet:
    if js.scheduler == "slurm" and wait:
        poll = float(js.options.get("poll_s") or 5)
        try:
            while any(j.state in ACTIVE for j in js.jobs):
                time.sleep(poll)
                slurm.refresh(js)
                js.save()
        except KeyboardInterrupt:
            print(f"submit: stopped waiting; the jobs stay queued (autoseg submit {js.run_dir} --status)", flush=True)
            wait = False
    print(status_table(js), flush=True)
    if js.scheduler == "slurm" and not wait:
        print(f"submit: state in {js.path}; check with `autoseg submit {js.run_dir} --status`", flush=True)
    msg = failed_summary(js)
    if msg:
        raise AutosegError(msg)
    return js


def _refuse_if_active(run_dir: Path, kind: str) -> None:
    if not (run_dir / "jobs" / f"{kind}.json").is_file():
        return
    active = [j for j in refresh(run_dir, kind).jobs if j.state in ACTIVE]
    if active:
        ids = " ".join(str(j.job_id) for j in active)
        raise AutosegError(f"{run_dir}: {len(active)} {kind} job(s) of an earlier submission are still queued or "
                           f"running ({ids}); wait for them (autoseg submit {run_dir} --status) or cancel them")


def status_table(js: JobSet) -> str:
    rows = [[j.name, j.state + (f" ({j.note})" if j.note else ""), j.job_id or "-", j.log or "-"] for j in js.jobs]
    return format_table(["job", "state", "id", "log"], rows)


def _print_plan(js: JobSet, jobs: list[Job] | None = None) -> None:
    """--dry-run: every job with what it waits for and the exact command it would run; nothing is written."""
    for j in jobs or js.jobs:
        after = f"  (after {', '.join(j.depends_on)})" if j.depends_on else ""
        print(f"{j.name}{after}\n    {shlex.join(j.command)}", flush=True)
        if js.scheduler == "slurm":
            nxt = dataclasses.replace(j, attempt=j.attempt + 1)
            nxt.log = str(js.log_file(nxt))
            print(f"    {shlex.join(slurm.sbatch_args(js, nxt, [f'<{d}>' for d in j.depends_on]))}", flush=True)


def submit(run_dir: str | Path, *, scheduler: str | None = None, configurations: Sequence[str] | None = None,
           folds: Sequence[str] | None = None, train_args: str | Sequence[str] = (), after_folds: str | None = None,
           predict: bool = False, inp: str | Path | None = None, out: str | Path | None = None, num_parts: int = 2,
           predict_args: str | Sequence[str] = (), partition: str | None = None, gpus_per_job: int | None = None,
           cpus_per_job: int | None = None, time_limit: str | None = None, max_parallel: int | None = None,
           sbatch_args: Sequence[str] = (), dry_run: bool = False, wait: bool = False, show_status: bool = False,
           resubmit: bool = False, parser: argparse.ArgumentParser | None = None) -> JobSet:
    """What `autoseg submit` asks for, one keyword per option: the state of a submission (``show_status``), its
    failed jobs again (``resubmit``), prediction parts (``predict``) or a training study.

    ``folds``: default every fold of the run's splits.json. ``train_args``/``predict_args``: extra options for
    every job, as words or one string of shell words (as the command line's --train-args gives them).
    ``after_folds``: the step after a configuration's folds (None: `autoseg crossval` where ``parser`` has it; "":
    none). ``parser``: the `autoseg` command line the jobs run, handed in by the CLI, so the jobs' arguments are
    parsed before anything is submitted."""
    kind = "predict" if predict else "train"
    if show_status:
        return status(run_dir, kind)
    if resubmit:
        return resubmit_failed(run_dir, kind, dry_run, wait)
    if not scheduler:
        raise AutosegError("give --scheduler slurm or --scheduler local")
    options = {"partition": partition, "gpus_per_job": gpus_per_job, "cpus_per_job": cpus_per_job,
               "time": time_limit, "max_parallel": max_parallel, "sbatch_args": list(sbatch_args)}
    if max_parallel is not None and max_parallel < 1:
        raise AutosegError(f"--max-parallel {max_parallel}: give 1 or more")
    if predict:
        if not inp or not out:
            raise AutosegError("--predict needs -i INPUT_FOLDER and -o OUTPUT_FOLDER")
        return submit_prediction(run_dir, inp, out, num_parts, scheduler, options,
                                 predict_args=_words(predict_args, "--predict-args"), dry_run=dry_run, wait=wait,
                                 parser=parser)
    if not configurations:
        raise AutosegError("give the configurations to train with -c (e.g. -c 2d 3d_fullres)")
    after = after_folds if after_folds is not None else default_after_folds(parser)
    if after is None:
        print("note: this autoseg has no `crossval` command; no step is submitted after the folds (give one with "
              "--after-folds)", flush=True)
    folds = list(folds) if folds else every_fold(run_dir)
    return submit_training(run_dir, list(configurations), folds, scheduler, options,
                           train_args=_words(train_args, "--train-args"), after_folds=after or None, dry_run=dry_run,
                           wait=wait, parser=parser)


def _words(text: str | Sequence[str] | None, option: str) -> list[str]:
    """Shell words of one string (an option's value), or the words as given."""
    if not isinstance(text, str):
        return list(text or ())
    try:
        return shlex.split(text)
    except ValueError as e:
        raise AutosegError(f"{option} {text!r}: not a valid command line ({e})") from None


__all__ = ["submit", "submit_training", "submit_prediction", "resubmit_failed", "status", "refresh", "SCHEDULERS"]
