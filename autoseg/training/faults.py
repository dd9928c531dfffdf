"""Fault injection for the kill drills (tests/drills/test_train_drills.py): a named point in training sends the
process a signal when the environment variable ``AUTOSEG_FAULT`` asks for it, so a test can kill a real ``train``
at a controlled moment. ``AUTOSEG_FAULT=POINT:SIGNAL:N[:RANK]`` fires at the N-th time POINT is reached (SIGNAL is KILL,
TERM or INT), with RANK only in the process of that torchrun rank. A fault fires on the first attempt only: a group
that torchrun restarted (``TORCHELASTIC_RESTART_COUNT`` > 0) runs clean, so a restart drill can finish.
Points: ``step`` (after an optimiser step); ``checkpoint_latest``, ``checkpoint_best``,
``checkpoint_final`` (that checkpoint's temporary file written, not yet renamed); ``validation_case`` (a held-out
case predicted during the final validation). Unset, it costs one environment look-up per point."""
from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get("AUTOSEG_FAULT")
    if not spec:
        return
    fields = spec.split(":")
    point, sig, nth, rank = (fields + ["KILL", "1", ""][len(fields) - 1:]) if len(fields) < 4 else fields[:4]
    if point != name or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    if rank and os.environ.get("RANK", "0") != rank:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth):
        os.kill(os.getpid(), getattr(signal, "SIG" + sig))
