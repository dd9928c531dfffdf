"""Process helpers: signals turned into exceptions, pool workers that die with their parent, a pool map that
stops at once on an interrupt, a call made in a fresh process, and whether a PID is alive."""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, TypeVar

from .progress import progress

T = TypeVar("T")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if num_workers <= 1 or len(items) <= 1:
        return [fn(x) for x in progress(items, total=len(items), desc=desc)]
    before = set(multiprocessing.active_children())
    ex = ProcessPoolExecutor(num_workers, initializer=exit_on_parent_death)
    try:
        # submit, not ex.map: map cancels its queued futures when an interrupt leaves it, and the executor, finding
        # its workers terminated, then fails those cancelled futures too; Python 3.11 prints that InvalidStateError
        # as a traceback from its management thread beside the one-line message (a drill test caught it)
        futures = [ex.submit(fn, x) for x in items]
        out = list(progress((f.result() for f in futures), total=len(items), desc=desc))
    except KeyboardInterrupt:  # stop now: the executor sees its workers gone and fails the queued items
        # its workers are the child processes started since (public API; the executor's own list is private)
        for proc in set(multiprocessing.active_children()) - before:
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


_FRESH_BOOT = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
               "from autoseg.core.process import _fresh_main; _fresh_main()")


def _fresh_main() -> None:
    """The fresh process's body: reads ``(fn, args, answer file)`` from stdin, writes ``("ok", value)`` or
    ``("error", text)`` to the answer file. It ends by itself if its parent dies."""
    import pickle
    import sys

    exit_on_parent_death()
    fn, args, answer = pickle.load(sys.stdin.buffer)
    try:
        out = ("ok", fn(*args))
    except BaseException as e:  # noqa: BLE001 - any failure is the caller's to report, with its message
        out = ("error", f"{type(e).__name__}: {e}")
    with open(answer + ".part", "wb") as f:
        pickle.dump(out, f)
    os.replace(answer + ".part", answer)  # whole or absent: a kill while writing leaves no half answer


def in_fresh_process(fn: Callable[..., T], *args: Any, what: str = "the call") -> T:
    """``fn(*args)`` computed in a newly started Python interpreter, as a training run starts in one: nothing of this
    process's memory, threads or torch state goes with it. ``fn`` (importable by name) and ``args`` are pickled; the
    caller's ``sys.path`` goes first, so whatever it imports the child imports. A new interpreter rather than
    multiprocessing's spawn, which re-runs the caller's main script in the child (a user's script without a
    ``__main__`` guard would plan again there). Its output goes where this process's goes. An error there is raised
    here as a RuntimeError naming ``what`` and the error; a process that ends without an answer (killed), likewise
    with its exit code. An interrupt here stops it, and it stops by itself if this process is killed."""
    import pickle
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="autoseg-fresh-") as tmp:
        answer = os.path.join(tmp, "answer.pkl")
        proc = subprocess.Popen([sys.executable, "-c", _FRESH_BOOT], stdin=subprocess.PIPE)
        try:
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps(list(sys.path)) + pickle.dumps((fn, args, answer)))
            proc.stdin.close()
            code = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        if not os.path.exists(answer):
            raise RuntimeError(f"{what} in a fresh process ended without an answer (exit code {code})")
        with open(answer, "rb") as f:
            status, value = pickle.load(f)
    if status != "ok":
        raise RuntimeError(f"{what} failed in a fresh process: {value}")
    return value
