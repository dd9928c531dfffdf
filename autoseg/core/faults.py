"""Fault injection for the kill drills (tests/drills): a named point in the code stops the process when the
environment variable ``AUTOSEG_FAULT`` asks for it, so a test can kill a real command at a controlled moment.

``AUTOSEG_FAULT=POINT:ACTION:N[:RANK]`` acts at the N-th time POINT is reached, with RANK only in the process of
that torchrun rank. ACTION is KILL, TERM or INT (the process sends itself that signal) or PAUSE (it says
``fault: paused at POINT (pid P)`` on stderr and sleeps, so that the test can signal it from outside). A fault acts
on the first attempt only: a group that torchrun restarted (``TORCHELASTIC_RESTART_COUNT`` > 0) runs clean, so a
restart drill can finish. Unset, a point costs one environment look-up.

Points: ``step`` (after an optimiser step); ``checkpoint_latest``, ``checkpoint_best``, ``checkpoint_final`` (that
checkpoint's temporary file written, not yet renamed); ``validation_case`` (a held-out case predicted during the
final validation); ``before_rename`` (any atomic write, before its rename); ``preprocess_case_done``,
``predict_case_done``, ``evaluate_before_summary``."""
from __future__ import annotations

import os
import signal
import sys
import time

_hits: dict[str, int] = {}
PAUSE_SECONDS = 120


def fault_point(name: str) -> None:
    spec = os.environ.get("AUTOSEG_FAULT")
    if not spec:
        return
    fields = spec.split(":")
    point, action, nth, rank = (fields + ["KILL", "1", ""][len(fields) - 1:]) if len(fields) < 4 else fields[:4]
    if point != name or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    if rank and os.environ.get("RANK", "0") != rank:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth):
        return
    if action == "PAUSE":
        print(f"fault: paused at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
        time.sleep(PAUSE_SECONDS)
    else:
        os.kill(os.getpid(), getattr(signal, "SIG" + action))
