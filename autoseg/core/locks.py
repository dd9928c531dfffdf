"""One writer per folder: a second autoseg process that would write into a folder another one is writing into is
refused at once, in one line naming the folder and the holder's PID.

Built on the ``filelock`` library's Unix lock (``flock``): the kernel releases it when its holder ends, even by
kill -9, so a killed run never blocks the next one, and a lock file it left behind is harmless (the next run takes
it over with a note). filelock closes the lock's descriptor in forked children (data-loader workers, pool workers),
so a worker that outlives a killed parent for a moment does not keep the folder locked. The holder writes its PID
into the lock file (filelock's ``on_acquired`` hook), so that a refused process can say who holds the folder; the
file is removed on a normal exit, on errors and on SIGTERM/SIGINT (which the CLI turns into exceptions).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import filelock

from .errors import AutosegError
from .files import remove_stale_temps

LOCK_NAME = ".autoseg.lock"  # preprocess, predict and evaluate lock their output folder
TRAIN_LOCK = "train.lock"  # train locks its fold folder
WAIT_S = 0.5  # a lock file removed by its holder between our open and our flock is retried within this time
_HELD: dict[Path, filelock.BaseFileLock] = {}  # locks this process holds (a nested folder_lock on one is a no-op)


def _read_pid(text: str) -> int | None:
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None  # being written, or not ours


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "", name: str = LOCK_NAME,
                clean_temps: bool = True) -> Iterator[Path]:
    """Hold ``folder/name`` while writing into ``folder``; ``what`` is the command (``predict``) the refusal names.

    A second process gets an AutosegError naming the folder and the PID that holds it. A lock file left by a killed
    process is taken over with a note, and (``clean_temps``) the temporary files it left are removed. Nesting on
    one folder in one process is allowed (the inner block does nothing).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    key = path.resolve()
    if key in _HELD:  # nested use in this process: the outer block holds and removes it
        yield path
        return
    left: list[int] = []

    def stamp(fd: int) -> None:  # called by filelock with the lock held: note what was there, write our PID
        pid = _read_pid(os.pread(fd, 64, 0).decode(errors="replace"))
        if pid is not None and pid != os.getpid():
            left.append(pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    lock = filelock.FileLock(path, timeout=WAIT_S, thread_local=False, on_acquired=stamp)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise AutosegError(_refusal(folder, path, what)) from None
    except OSError as e:  # a filesystem without flock (some network filesystems)
        raise AutosegError(f"{folder}: cannot lock {path} ({e.strerror or e}); write to a local folder, or one "
                           "on a filesystem with file locks") from None
    _HELD[key] = lock
    try:
        if left:
            print(f"note: {folder}: taking over the lock of pid {left[0]}, which is no longer running", flush=True)
        if clean_temps:
            remove_stale_temps(folder)
        yield path
    finally:  # our pool workers are gone by now, so temporary files an interrupt cut short can go too
        del _HELD[key]
        try:
            if clean_temps:
                remove_stale_temps(folder)
            path.unlink(missing_ok=True)  # while still holding it: a newcomer creates a fresh file
        finally:
            lock.release()


def _refusal(folder: Path, path: Path, what: str) -> str:
    try:
        pid = _read_pid(path.read_text())
    except OSError:
        pid = None
    who = f"`autoseg {what}`" if what else "autoseg process"
    held = f" (pid {pid})" if pid is not None else f" (it holds {path.name})"
    return f"{folder}: another {who}{held} is writing here; wait for it to finish, or stop it"


@contextlib.contextmanager
def fold_lock(folder: Path) -> Iterator[Path]:
    """``folder_lock`` for a fold folder (``train.lock``): two `train` commands on one fold would interleave their
    logs and overwrite each other's checkpoints."""
    with folder_lock(folder, "train", name=TRAIN_LOCK, clean_temps=False) as path:
        yield path
