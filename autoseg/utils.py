"""Small helpers shared by every stage: atomic writes, JSON, progress lines."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from .core.errors import AutosegError  # noqa: F401  (re-exported: most modules import it from here)
from .faults import fault_point

T = TypeVar("T")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


TEMP_MARK = ".autoseg-tmp-"  # in every temporary file name, so that leftovers of a kill -9 can be recognised


def _is_disk_full(e: BaseException, folder: Path) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(e, (OSError, RuntimeError)):
        return False
    # torch.save says RuntimeError("... unexpected pos ..."), SimpleITK RuntimeError("... could not write ...")
    if any(s in str(e) for s in ("unexpected pos", "file write failed", "No space left")):
        return True
    try:
        return shutil.disk_usage(folder).free < 16 * 2 ** 20
    except OSError:
        return False


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then rename it onto ``path``.

    A crash leaves either the old file or the new one, never a half-written one. ``suffix`` is the temporary
    name's ending, for writers that choose the format from the file name (pass the real ending). A full disk
    becomes an AutosegError naming the file (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path, suffix)
    try:
        write(tmp)
        fault_point("before_rename")
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _is_disk_full(e, path.parent):
            raise AutosegError(f"{path}: could not be written, the disk is full (free space in {path.parent} "
                               "and run the command again; finished files are kept)") from None
        raise


def _create_temp(path: Path, suffix: str) -> str:
    """A new hidden file beside ``path``, created with mode 0o666 so that the process umask applies (mkstemp makes
    private files; reading the umask would mean changing it)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files a killed writer left in ``folder`` (call only while holding its lock)."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TEMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                n += 1
    return n


LOCK_NAME = ".autoseg.lock"
_HELD: set[Path] = set()  # locks this process holds (a nested folder_lock on one of them is a no-op)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def refuse_overwriting_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]) -> None:
    """Raise if any output file would replace (or is a link to) one of the input files."""
    def key(p: Path) -> tuple:
        p = Path(p)
        try:
            st = p.stat()
            return (st.st_dev, st.st_ino)
        except OSError:
            return (str(p.resolve()),)

    ins = {}
    for p in inputs:
        ins[key(Path(p))] = Path(p)
        ins[(str(Path(p).resolve()),)] = Path(p)
    for o in outputs:
        o = Path(o)
        hit = ins.get(key(o)) or ins.get((str(o.resolve()),))
        if hit is not None:
            raise AutosegError(f"{o}: this output would replace the input file {hit}; choose another output folder")


def exit_on_parent_death(poll_s: float = 0.5) -> None:
    """Pool-worker initializer: exit as soon as the parent process is gone (kill -9 of the main process), and leave
    Ctrl-C to the parent (which stops the workers), so that the terminal shows one message, not one per worker."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate() from the parent ends a worker at once

    def _watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=_watch, daemon=True, name="parent-watch").start()


def pool_map(fn: Callable[[Any], T], items: list, num_workers: int, desc: str = "") -> list[T]:
    """``[fn(x) for x in items]`` over worker processes, with a progress line.

    Unlike ``with ProcessPoolExecutor``, an error here does not wait for the queued items (they are cancelled), an
    interrupt terminates the workers at once, and workers exit by themselves if this process is killed."""
    from concurrent.futures import ProcessPoolExecutor

    if num_workers <= 1 or len(items) <= 1:
        return [fn(x) for x in progress(items, total=len(items), desc=desc)]
    ex = ProcessPoolExecutor(num_workers, initializer=exit_on_parent_death)
    try:
        out = list(progress(ex.map(fn, items), total=len(items), desc=desc))
    except KeyboardInterrupt:  # stop now: the executor sees its workers gone and fails the queued items
        for proc in list(getattr(ex, "_processes", {}).values()):
            proc.terminate()
        ex.shutdown(wait=True)
        raise
    except BaseException:  # an error in one item: the queued ones are cancelled, the running ones finish
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown()
    return out


def raise_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into KeyboardInterrupt, so that temporary files and locks are cleaned up on the way out.
    Returns a function that restores the previous handler (a no-op outside the main thread, where signal
    handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def _handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n"

    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write_bytes(path, _w)


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise AutosegError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise AutosegError(f"{path}: not valid JSON ({e})") from None


def save_npy(arr: np.ndarray, path: str | os.PathLike) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr)

    atomic_write_bytes(path, _w)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", stream=None) -> Iterator[T]:
    """A dependency-free progress bar; one line per update when the stream is not a terminal."""
    stream = stream or sys.stderr
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
    tty = hasattr(stream, "isatty") and stream.isatty()
    start = time.time()
    last_print = 0.0
    n = 0
    for item in items:
        yield item
        n += 1
        now = time.time()
        if not tty and now - last_print < 5 and n != total:
            continue
        last_print = now
        rate = n / max(now - start, 1e-9)
        if total:
            width = 30
            done = int(width * n / total)
            eta = (total - n) / rate if rate > 0 else 0
            line = f"{desc} [{'#' * done}{'.' * (width - done)}] {n}/{total} {now - start:5.1f}s eta {eta:5.1f}s"
        else:
            line = f"{desc} {n} {now - start:5.1f}s"
        stream.write(("\r" + line) if tty else (line + "\n"))
        stream.flush()
    if tty and n:
        stream.write("\n")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table a person can read in a terminal."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.4f}" if abs(c) < 1000 else f"{c:.1f}"
    if isinstance(c, (list, tuple)):
        return "x".join(_fmt(v) if not isinstance(v, float) else f"{v:.4g}" for v in c)
    return str(c)
