"""Running a job graph on this machine with a bounded pool of processes (one job per GPU, or one on a CPU).

The same job scripts as on SLURM, with the same rule: a job starts when every job it depends on completed, and is
cancelled when one of them failed (SLURM's afterok).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from ..core.process import pid_alive
from .jobs import ACTIVE, Job, JobSet, apply_exit_status, read_exit_status


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means a CPU machine
        return 0


def default_parallel(gpus_per_job: int | None) -> int:
    """One job per GPU (or per group of --gpus-per-job GPUs); one at a time on a CPU."""
    n = gpu_count()
    return max(1, n // max(1, gpus_per_job or 1)) if n else 1


def run(js: JobSet, jobs: list[Job], poll_s: float = 0.2) -> None:
    """Run ``jobs`` (already prepared) to the end, at most options['max_parallel'] at a time; saves state as it goes."""
    limit = js.options.get("max_parallel") or default_parallel(js.options.get("gpus_per_job"))
    running: dict[str, tuple[subprocess.Popen, int]] = {}
    for j in jobs:
        j.state = "pending"
    js.save()
    try:
        while any(j.state in ACTIVE for j in jobs):
            _reap(js, running)
            _cancel_orphans(js, jobs)
            free = [s for s in range(limit) if s not in {slot for _, slot in running.values()}]
            for j in [j for j in jobs if j.state == "pending" and _ready(js, j)][: len(free)]:
                slot = free.pop(0)
                running[j.name] = (_start(js, j, slot), slot)
                js.save()
            time.sleep(poll_s)
    except BaseException:
        _stop(js, running)
        raise


def _ready(js: JobSet, job: Job) -> bool:
    return all(js.job(d).state == "completed" for d in job.depends_on)


def _cancel_orphans(js: JobSet, jobs: list[Job]) -> None:
    changed = True
    while changed:
        changed = False
        for j in jobs:
            if j.state == "pending" and any(js.job(d).state in ("failed", "cancelled") for d in j.depends_on):
                j.state, j.note, changed = "cancelled", "a job it depends on failed", True
                js.save()


def _start(js: JobSet, job: Job, slot: int) -> subprocess.Popen:
    env = dict(os.environ)
    n = gpu_count()
    if n:  # each slot its own GPU(s): slot k of jobs with g GPUs sees GPUs k*g .. k*g+g-1
        g = js.options.get("gpus_per_job") or 1
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str((slot * g + i) % n) for i in range(g))
    log = open(job.log, "ab")
    try:
        p = subprocess.Popen(["bash", str(js.script(job))], stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    finally:
        log.close()
    job.state, job.job_id = "running", f"pid {p.pid}"
    print(f"submit: started {job.name} (log {job.log})", flush=True)
    return p


def _reap(js: JobSet, running: dict[str, tuple[subprocess.Popen, int]]) -> None:
    for name, (p, _) in list(running.items()):
        if p.poll() is None:
            continue
        job = js.job(name)
        rc = read_exit_status(js, job)
        apply_exit_status(job, rc if rc is not None else (p.returncode or 1))
        if rc is None:
            job.note = f"killed (exit {p.returncode}), no exit status recorded"
        print(f"submit: {name} {job.state} (exit {job.returncode})", flush=True)
        del running[name]
        js.save()


def refresh(js: JobSet) -> None:
    """After the submitting process is gone (killed), a job it had running is over once its process is: its
    recorded exit status decides, or it counts as failed."""
    for j in js.jobs:
        if j.state not in ACTIVE:
            continue
        pid = int(j.job_id.split()[-1]) if j.job_id and j.job_id.startswith("pid ") else None
        if pid is not None and pid_alive(pid):
            continue
        rc = read_exit_status(js, j)
        if rc is not None:
            apply_exit_status(j, rc)
        else:
            j.state = "failed" if pid is not None else "cancelled"
            j.note = "the local pool that ran it was stopped"


def _stop(js: JobSet, running: dict[str, tuple[subprocess.Popen, int]]) -> None:
    """Interrupted: end the jobs this pool started (their whole process groups), and record them as failed."""
    for name, (p, _) in running.items():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        job = js.job(name)
        job.state, job.note = "failed", "interrupted"
    for j in js.jobs:
        if j.state == "pending":
            j.state, j.note = "cancelled", "interrupted before it started"
    js.save()


__all__ = ["run", "refresh", "default_parallel", "gpu_count"]
