"""One writer per folder: a lock file that a second autoseg process writing to the same folder is refused by."""
from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import AutosegError
from .files import remove_stale_temps
from .process import pid_alive

LOCK_NAME = ".autoseg.lock"
_HELD: set[Path] = set()  # locks this process holds (a nested folder_lock on one of them is a no-op)


def try_create_lock(lock: Path) -> bool:
    """Create ``lock`` holding our PID, atomically (O_EXCL); False when it exists already."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "autoseg", name: str = LOCK_NAME,
                clean_temps: bool = True) -> Iterator[Path]:
    """Hold ``folder/.autoseg.lock`` (created with O_EXCL, holding our PID) while writing into ``folder``.

    A second writer gets an AutosegError naming the PID that holds the folder. A lock left by a process that is
    no longer alive (kill -9) is taken over with a note; temporary files it left are removed. The lock is
    removed on exit, also on errors and on SIGTERM/SIGINT (which the CLI turns into exceptions). Nesting on one
    folder in one process is allowed (the inner block does nothing).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    if lock.resolve() in _HELD:  # nested use in this process: the outer block holds and removes it
        yield lock
        return
    for _ in range(3):
        if try_create_lock(lock):
            break
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = -1
        if pid > 0 and pid != os.getpid() and pid_alive(pid):
            raise AutosegError(f"{folder}: another {what} process (pid {pid}) is writing here; wait for it to "
                               f"finish, or remove {lock} if that process is not autoseg")
        print(f"note: {folder}: taking over the lock of a process that is no longer running (pid {pid})",
              flush=True)
        lock.unlink(missing_ok=True)
    else:
        raise AutosegError(f"{folder}: could not take the lock {lock}; remove it if no autoseg process runs")
    _HELD.add(lock.resolve())
    try:
        if clean_temps:
            remove_stale_temps(folder)
        yield lock
    finally:  # our pool workers are gone by now, so temporary files an interrupt cut short can go too
        _HELD.discard(lock.resolve())
        if clean_temps:
            remove_stale_temps(folder)
        lock.unlink(missing_ok=True)


TRAIN_LOCK = "train.lock"


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # being written, or garbage: treated as stale


@contextmanager
def fold_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/train.lock`` for the duration; refuse (AutosegError) while a live process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TRAIN_LOCK
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
