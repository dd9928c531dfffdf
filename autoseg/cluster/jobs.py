"""Jobs as plain command lines, their dependencies, and their state in RUN/jobs/.

A job is an `autoseg ...` command line (what you would type), run by a small bash script that records the
command's exit status in RUN/jobs/status/<job>.rc. SLURM and the local pool run the same scripts, so a job's state
is read the same way everywhere, and any job can be rerun by hand with `bash RUN/jobs/scripts/<job>.sh`.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes
from ..core.jsonio import load_json, save_json

ACTIVE = ("submitted", "pending", "running")  # states of a job that may still run
RERUNNABLE = ("failed", "cancelled")  # what --resubmit-failed submits again


def autoseg_command() -> list[str]:
    """This interpreter running this autoseg, so a job uses the same environment as the submitting shell."""
    return [sys.executable, "-m", "autoseg.cli"]


@dataclass
class Job:
    name: str
    command: list[str]
    depends_on: list[str] = field(default_factory=list)
    throttled: bool = True  # counts against --max-parallel (fold and part jobs; not preprocess/crossval)
    fold_dir: str | None = None  # a training job: --resume is added when this fold has a checkpoint to continue
    job_id: str | None = None
    state: str = "new"  # new, submitted, pending, running, completed, failed, cancelled
    attempt: int = 0
    returncode: int | None = None
    log: str | None = None
    note: str = ""


@dataclass
class JobSet:
    """One submission (training or prediction) of a run, saved as RUN/jobs/<kind>.json."""
    run_dir: Path
    kind: str  # "train" or "predict"
    scheduler: str  # "slurm" or "local"
    options: dict
    jobs: list[Job]

    @property
    def folder(self) -> Path:
        return self.run_dir / "jobs"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.kind}.json"

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def script(self, job: Job) -> Path:
        return self.folder / "scripts" / f"{job.name}.sh"

    def rc_file(self, job: Job) -> Path:
        return self.folder / "status" / f"{job.name}.rc"

    def log_file(self, job: Job) -> Path:
        return self.folder / "logs" / f"{job.name}-{job.attempt}.log"

    def save(self) -> None:
        d = {"run_dir": str(self.run_dir), "kind": self.kind, "scheduler": self.scheduler, "options": self.options,
             "jobs": [dict(dataclasses.asdict(j), shell=shlex.join(j.command)) for j in self.jobs]}
        save_json(d, self.path)

    @staticmethod
    def load(run_dir: Path, kind: str) -> "JobSet":
        path = run_dir / "jobs" / f"{kind}.json"
        if not path.is_file():
            raise AutosegError(f"{path}: no {kind} submission in this run; submit one first with `autoseg submit`")
        d = load_json(path)
        fields = {f.name for f in dataclasses.fields(Job)}
        jobs = [Job(**{k: v for k, v in j.items() if k in fields}) for j in d["jobs"]]
        return JobSet(Path(d["run_dir"]), d["kind"], d["scheduler"], d["options"], jobs)


def prepare_attempt(js: JobSet, job: Job) -> None:
    """Start a new attempt of ``job``: fresh log name, no stale exit status, the script written."""
    job.attempt += 1
    job.returncode, job.job_id, job.note = None, None, ""
    if job.fold_dir:
        job.command = with_resume_if_started(job.command, Path(job.fold_dir))
    job.log = str(js.log_file(job))
    js.rc_file(job).unlink(missing_ok=True)
    write_script(js, job)


def with_resume_if_started(command: list[str], fold_dir: Path) -> list[str]:
    """A train command with `--resume` right after `-f FOLD` when the fold has a checkpoint (continue it, or do
    nothing if it is finished) and without it otherwise (start it): a resubmitted job never starts a fold over."""
    cmd = [a for a in command if a != "--resume"]
    if any((fold_dir / n).is_file() for n in ("checkpoint_latest.pt", "checkpoint_final.pt")):
        i = cmd.index("-f") + 2
        cmd = cmd[:i] + ["--resume"] + cmd[i:]
    return cmd


def write_script(js: JobSet, job: Job) -> Path:
    """The job's bash script: run the command in the submitting folder, then record its exit status atomically."""
    rc = js.rc_file(job)
    rc.parent.mkdir(parents=True, exist_ok=True)
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    env = ""
    pythonpath = os.environ.get("PYTHONPATH", "")
    if pythonpath:
        env = f"export PYTHONPATH={shlex.quote(pythonpath)}\n"
    text = (f"#!/usr/bin/env bash\n# autoseg submit: job {job.name} of {js.run_dir} (attempt {job.attempt})\n"
            f"cd {shlex.quote(str(Path.cwd()))}\n{env}"
            f"echo \"autoseg job {job.name}: started $(date -u +%FT%TZ) on $(hostname)\"\n"
            f"{shlex.join(job.command)}\nrc=$?\n"
            f"echo \"$rc\" > {shlex.quote(str(rc))}.tmp && mv {shlex.quote(str(rc))}.tmp {shlex.quote(str(rc))}\n"
            f"echo \"autoseg job {job.name}: exit status $rc $(date -u +%FT%TZ)\"\nexit $rc\n")
    path = js.script(job)

    def _w(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write_bytes(path, _w)
    path.chmod(0o755)
    return path


def read_exit_status(js: JobSet, job: Job) -> int | None:
    """The exit status the job's script recorded, or None while it has not finished (or was killed)."""
    p = js.rc_file(job)
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


def apply_exit_status(job: Job, rc: int) -> None:
    job.returncode = rc
    job.state = "completed" if rc == 0 else "failed"


def failed_summary(js: JobSet) -> str | None:
    """One line naming every failed or cancelled job with its log, and the command that resubmits them."""
    bad = [j for j in js.jobs if j.state in RERUNNABLE]
    if not bad:
        return None
    parts = [f"{j.name} {j.state}{' (' + j.note + ')' if j.note else ''}, log {j.log}" for j in bad]
    return (f"{len(bad)} job(s) did not complete: " + "; ".join(parts) +
            f". After fixing the cause: autoseg submit {js.run_dir} --resubmit-failed"
            + (" --predict" if js.kind == "predict" else ""))


__all__ = ["Job", "JobSet", "ACTIVE", "RERUNNABLE", "autoseg_command", "prepare_attempt", "write_script",
           "with_resume_if_started",
           "read_exit_status", "apply_exit_status", "failed_summary"]
