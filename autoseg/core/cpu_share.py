"""Sharing the CPU with other processes: how many cores they keep busy, and how many compute threads training
should use beside them.

Linux only (``/proc``): the machine's busy time (``/proc/stat``) less the time of this process and its children
(the data workers, ``/proc/<pid>/stat``) over a window, in cores. Elsewhere nothing is measured and training uses
every core, as before.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

PROC = Path("/proc")


def _machine_ticks(proc: Path = PROC) -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot."""
    try:
        fields = [int(v) for v in (proc / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total


def _children(pid: int, proc: Path) -> list[int]:
    kids = []
    for task in (proc / str(pid) / "task").glob("*/children"):
        try:
            kids += [int(v) for v in task.read_text().split()]
        except (OSError, ValueError):
            pass
    return kids


def _process_ticks(pid: int, proc: Path) -> int:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _own_ticks(proc: Path = PROC, pid: int | None = None) -> int:
    """Clock ticks used by this process and its living children (the data workers)."""
    pid = os.getpid() if pid is None else pid
    return _process_ticks(pid, proc) + sum(_process_ticks(k, proc) for k in _children(pid, proc))


class CpuShare:
    """Cores kept busy by other processes since the last call (first call: since construction)."""

    def __init__(self, cores: int | None = None, proc: Path = PROC, pid: int | None = None):
        self.cores, self.proc, self.pid = cores or os.cpu_count() or 1, proc, pid
        self._last = self._sample()

    def _sample(self) -> tuple[int, int, int] | None:
        m = _machine_ticks(self.proc)
        return None if m is None else (*m, _own_ticks(self.proc, self.pid))

    def others(self) -> float | None:
        now = self._sample()
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        busy, total, own = (a - b for a, b in zip(now, last))
        return max(0.0, min(float(self.cores), (busy - own) / total * self.cores))


def others_now(seconds: float = 1.0) -> float | None:
    """Cores other processes keep busy, measured over ``seconds`` while this process waits."""
    share = CpuShare()
    time.sleep(seconds)
    return share.others()


def threads_beside(others: float | None, cores: int | None = None) -> int:
    """Compute threads for training beside ``others`` busy cores: the cores they leave free, at least one."""
    cores = cores or os.cpu_count() or 1
    if others is None:
        return cores
    return max(1, min(cores, round(cores - others)))


def use_free_cores(seconds: float = 0.5, say: Callable[[str], None] | None = None,
                   doing: str = "computing") -> tuple[int, float | None]:
    """Set torch's compute threads to the cores other processes leave free (measured over ``seconds``; one core:
    nothing to measure) and, with ``say``, tell when that is fewer than all (``doing``: what the threads are for).
    Returns (threads, cores the others keep busy or None)."""
    import torch

    cores = os.cpu_count() or 1
    others = others_now(seconds) if cores > 1 else None
    threads = threads_beside(others, cores)
    torch.set_num_threads(threads)
    if say is not None and others is not None and threads < cores:
        say(f"note: other processes keep {others:.1f} of {cores} cores busy; {doing} with {threads} thread(s)")
    return threads, others

