"""SIGTERM and Ctrl-C end training cleanly: the handler only records the signal; the loop checks it after each
step, saves ``checkpoint_latest.pt`` and raises ``TrainingInterrupted``, which the CLI turns into a one-line
message and exit status 128 + signal number (no traceback). A second signal interrupts at once."""
from __future__ import annotations

import signal
import threading


class TrainingInterrupted(Exception):
    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class StopFlag:
    """Records SIGTERM/SIGINT while installed (a context manager; only in the main thread)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise TrainingInterrupted(signum)
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None
