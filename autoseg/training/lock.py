"""A lock file per fold: two `train` commands on one fold would interleave their logs and overwrite each other's
checkpoints. The lock holds the owner's PID; a lock whose process is gone (killed) is taken over with a note."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..utils import AutosegError, pid_alive, try_create_lock

LOCK_NAME = "train.lock"


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # being written, or garbage: treated as stale


@contextmanager
def fold_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/train.lock`` for the duration; refuse (AutosegError) while a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if not try_create_lock(path):
        pid = _holder(path)
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            raise AutosegError(f"{folder}: another `autoseg train` (PID {pid}) is training this fold; wait for it "
                               f"or stop it (lock file {path})")
        print(f"note: {path}: taking over the lock of PID {pid}, which is no longer running", flush=True)
        path.unlink(missing_ok=True)
        if not try_create_lock(path):
            raise AutosegError(f"{folder}: another `autoseg train` took the lock just now ({path})")
    try:
        yield path
    finally:
        if _holder(path) == os.getpid():
            path.unlink(missing_ok=True)
