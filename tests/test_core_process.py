"""core/process.py: an interrupt stops pool_map's workers at once (they ignore Ctrl-C; the parent ends them)."""
import os
import signal
import subprocess
import sys

NAPPER = """import os, sys, time
from autoseg.core.process import pool_map

def nap(x):
    os.write(1, f"{os.getpid()}\\n".encode())  # one write per line: two workers' prints could interleave
    time.sleep(600)

try:
    pool_map(nap, [1, 2, 3, 4], 2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_an_interrupt_ends_pool_map_workers_at_once():
    """Without terminating them, the interrupted map would wait for the workers' 600 s naps (and the test time out)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-c", NAPPER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    try:
        workers = [int(p.stdout.readline()) for _ in range(2)]
        os.kill(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        p.kill()
    assert "interrupted" in out and p.returncode == 0
    for w in workers:  # the workers were ended and reaped, not left napping
        try:
            os.kill(w, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, w


def _fail(why):
    raise ValueError(why)


def _die():
    os._exit(7)


def _process_attr(name):
    from autoseg.core import process

    return getattr(process, name, "absent")


def test_in_fresh_process_answers_from_another_interpreter_and_reports_its_failures():
    """A known answer computed elsewhere (another PID, and a module attribute changed here is not seen there); an
    error there comes back naming what was done and the error; a process that dies without answering names its exit
    code."""
    import pytest

    from autoseg.core import process as P

    assert P.in_fresh_process(os.getpid) != os.getpid()
    assert P.in_fresh_process(sum, [1, 2, 3], 10) == 16
    P._SET_HERE_ONLY = "here"
    assert _process_attr("_SET_HERE_ONLY") == "here"
    assert P.in_fresh_process(_process_attr, "_SET_HERE_ONLY") == "absent"
    del P._SET_HERE_ONLY
    with pytest.raises(RuntimeError, match=r"timing x failed in a fresh process: ValueError: bad candidate"):
        P.in_fresh_process(_fail, "bad candidate", what="timing x")
    with pytest.raises(RuntimeError, match=r"ended without an answer \(exit code 7\)"):
        P.in_fresh_process(_die)
