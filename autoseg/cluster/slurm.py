"""Submitting job scripts with sbatch and reading their state back (squeue, scontrol, the recorded exit status).

Plain sbatch rather than submitit: every job is an `autoseg` command line, so what SLURM runs is readable in
`scontrol show job`, in RUN/jobs/scripts/ and in the state JSON, can be rerun by hand, and does not depend on
unpickling Python objects in the job's environment. Dependencies are SLURM's own (afterok, singleton).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zlib

from ..core.errors import AutosegError
from .jobs import ACTIVE, Job, JobSet, apply_exit_status, read_exit_status

_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def check_options(options: dict, need_sbatch: bool = True) -> None:
    """Reject options sbatch would refuse, before anything is submitted."""
    if need_sbatch and shutil.which("sbatch") is None:
        raise AutosegError("sbatch is not on PATH: run this on a SLURM login node, or use --scheduler local")
    t = options.get("time")
    if t and not _TIME.match(t):
        raise AutosegError(f"--time {t}: use HH:MM:SS, MM or D-HH:MM:SS")


def sbatch_args(js: JobSet, job: Job, dep_ids: list[str]) -> list[str]:
    """The sbatch command line of one job. With --max-parallel N the throttled jobs share N job names and wait
    for each other with `singleton`, so at most N of them run at once."""
    o = js.options
    cmd = ["sbatch", "--parsable", f"--job-name={_job_name(js, job)}", f"--output={job.log}",
           "--kill-on-invalid-dep=yes"]
    if o.get("partition"):
        cmd.append(f"--partition={o['partition']}")
    if o.get("time"):
        cmd.append(f"--time={o['time']}")
    if o.get("gpus_per_job"):
        cmd.append(f"--gres=gpu:{o['gpus_per_job']}")
    if o.get("cpus_per_job"):
        cmd.append(f"--cpus-per-task={o['cpus_per_job']}")
    deps = ["afterok:" + ":".join(dep_ids)] if dep_ids else []
    if o.get("max_parallel") and job.throttled:
        deps.append("singleton")
    if deps:
        cmd.append("--dependency=" + ",".join(deps))
    return cmd + list(o.get("sbatch_args") or []) + [str(js.script(job))]


def _job_name(js: JobSet, job: Job) -> str:
    tag = f"{zlib.crc32(str(js.run_dir).encode()) & 0xFFFF:04x}"
    n = js.options.get("max_parallel")
    if n and job.throttled:
        throttled = [j.name for j in js.jobs if j.throttled]
        return f"autoseg-{tag}-slot{throttled.index(job.name) % n}"
    return f"autoseg-{tag}-{job.name}"


def submit(js: JobSet, job: Job, dep_ids: list[str]) -> None:
    cmd = sbatch_args(js, job, dep_ids)
    r = _run(cmd)
    if r.returncode != 0:
        raise AutosegError(f"sbatch refused job {job.name}: {r.stderr.strip() or r.stdout.strip()} "
                           f"(command: {' '.join(cmd)})")
    job.job_id = r.stdout.strip().split(";")[0]
    job.state = "submitted"


def refresh(js: JobSet) -> None:
    """Update the state of every active job: the queue first, then the exit status its script recorded (a job that
    left the queue has written it, unless SLURM killed it), then scontrol for how a killed job ended."""
    active = [j for j in js.jobs if j.state in ACTIVE and j.job_id]
    if not active:
        return
    r = _run(["squeue", "-h", "-o", "%i %T"])
    if r.returncode != 0:
        raise AutosegError(f"squeue failed: {r.stderr.strip()}")
    queue = dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())
    for j in active:
        rc = read_exit_status(js, j)
        if rc is not None:
            apply_exit_status(j, rc)
        elif j.job_id in queue:
            j.state = "running" if queue[j.job_id].strip() in ("RUNNING", "COMPLETING", "CONFIGURING") else "pending"
        else:
            _ended_without_status(j)


def _ended_without_status(job: Job) -> None:
    r = _run(["scontrol", "-o", "show", "job", job.job_id])
    m = re.search(r"JobState=(\S+)", r.stdout)
    reason = re.search(r"Reason=(\S+)", r.stdout)
    state = m.group(1) if m else "unknown"
    why = reason.group(1) if reason and reason.group(1) != "None" else ""
    if state == "CANCELLED" and "Dependency" in why:
        job.state, job.note = "cancelled", "a job it depends on failed"
    elif state in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
        return  # left squeue's answer between the two calls; look again next time
    else:
        job.state = "failed"
        job.note = f"SLURM state {state}{' ' + why if why else ''}, no exit status recorded"


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise AutosegError(f"{cmd[0]} is not on PATH: run this where the SLURM client commands are installed (the "
                           "login node the jobs were submitted from)") from None
    except subprocess.TimeoutExpired:
        raise AutosegError(f"{cmd[0]} did not answer in 120 s: is slurmctld running? (sinfo)") from None


__all__ = ["check_options", "sbatch_args", "submit", "refresh", "cancel"]
