"""Kill drills for preprocess, predict and evaluate (train's are in test_train_drills.py).

Each drill pauses the real CLI at a named point (AUTOSEG_FAULT=POINT:PAUSE:N, see autoseg.core.faults), sends SIGKILL or
SIGTERM, then runs the same command again and checks: it finishes, nothing finished before the kill is lost or
redone (same bytes and modification time), and no temporary or lock file is left or read.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.corpus.generate import TEST_CASE

ROOT = Path(__file__).resolve().parents[2]
PAUSED = "fault: paused at"
pytestmark = pytest.mark.slow


@pytest.fixture
def base(corpus_base):  # tests/conftest.py
    return corpus_base


def start(argv: list[str], drill: str | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("AUTOSEG_FAULT", None)
    if drill:  # POINT:N
        point, nth = drill.rsplit(":", 1)
        env["AUTOSEG_FAULT"] = f"{point}:PAUSE:{nth}"
    return subprocess.Popen([sys.executable, "-m", "autoseg.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)


def _as_in_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background by a non-interactive shell inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_pause(p: subprocess.Popen, seconds: float = 120) -> str:
    """Read the command's stderr up to the drill point's line and return it. Fails at once when the command ends
    first (end of file: a bare ``readline`` loop would spin there for ever) or has not got there in ``seconds``
    (a command that hangs without a word is stopped by the per-test timeout)."""
    deadline, seen = time.time() + seconds, []
    while True:
        line = p.stderr.readline()
        if not line:
            p.wait(timeout=30)
            pytest.fail(f"the command ended (exit {p.returncode}) before the drill point: {''.join(seen)[-3000:]}")
        if PAUSED in line:
            return line
        seen.append(line)
        if time.time() > deadline:
            pytest.fail(f"no drill point after {seconds:.0f}s: {''.join(seen)[-3000:]}")


def wait_until_gone(pids: list[int], seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while any(alive(w) for w in pids) and time.time() < deadline:
        time.sleep(0.1)
    return not any(alive(w) for w in pids)


def run_to_drill_and_signal(argv: list[str], drill: str, sig: int) -> tuple[int, str]:
    """Start the command, wait until it reaches the drill point, send ``sig``; return (exit code, stderr)."""
    p = start(argv, drill)
    try:
        line = wait_for_pause(p)
        os.kill(p.pid, sig)
        rest = p.communicate(timeout=60)[1]
        return p.returncode, line + rest
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run_ok(argv: list[str]) -> subprocess.CompletedProcess:
    p = start(argv, None)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir() if p.is_file()}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def check_signal_outcome(rc: int, err: str, sig: int, folder: Path) -> None:
    if sig == signal.SIGTERM:  # clean: one line, temp files and the lock removed
        assert rc == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert hidden(folder) == []
    else:
        assert rc == -signal.SIGKILL


def fresh_run(base, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed"))
    return run


SIGNALS = [pytest.param(signal.SIGKILL, id="kill9"), pytest.param(signal.SIGTERM, id="sigterm")]


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", ["preprocess_case_done:2", "before_rename:5"])
def test_preprocess_killed_then_rerun(base, tmp_path, sig, point):
    run = fresh_run(base, tmp_path)
    argv = ["preprocess", str(run), "-c", "2d", "-j", "1"]
    rc, err = run_to_drill_and_signal(argv, point, sig)
    folder = run / "preprocessed" / "2d"
    check_signal_outcome(rc, err, sig, folder)
    # writes: 1 plan_signature.json, then .npy, _seg.npy, .json per case
    done = {p.stem for p in folder.glob("*.json") if p.name != "plan_signature.json"}
    assert len(done) == (2 if point.startswith("preprocess") else 1)  # write 5: 2nd case image
    before = {n: v for n, v in snapshot(folder).items() if n.split(".")[0].replace("_seg", "") in done}
    out = run_ok(argv)
    if sig == signal.SIGKILL:
        assert "no longer running" in out.stdout  # the dead process's lock was taken over
    after = snapshot(folder)
    assert len([n for n in after if n.endswith("_seg.npy")]) == 6
    assert all(after[n] == v for n, v in before.items())  # finished cases were neither lost nor redone
    assert hidden(folder) == []


def test_preprocess_workers_die_with_their_parent(base, tmp_path):
    run = fresh_run(base, tmp_path)
    p = start(["preprocess", str(run), "-c", "2d", "-j", "2"], "preprocess_case_done:1")
    try:
        workers: list[int] = []
        deadline = time.time() + 120
        while len(workers) < 2 and time.time() < deadline:  # both workers pause after their first case
            time.sleep(0.2)
            workers = children_of(p.pid)
        assert len(workers) >= 2
        wait_for_pause(p)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert wait_until_gone(workers), "pool workers outlived the killed preprocess by 10 s"
    finally:
        os.killpg(p.pid, signal.SIGKILL) if p.poll() is None else None
        for w in children_of(p.pid):
            os.kill(w, signal.SIGKILL)


def test_ctrl_c_on_a_parallel_preprocess_is_one_clean_message(base, tmp_path):
    run = fresh_run(base, tmp_path)
    argv = ["preprocess", str(run), "-c", "2d", "-j", "2"]
    p = start(argv, "preprocess_case_done:1")
    try:
        wait_for_pause(p)
        workers = children_of(p.pid)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        err = p.communicate(timeout=120)[1]  # bounded; 60 s once ran out on a loaded 2-core machine
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert wait_until_gone(workers)
    assert hidden(run / "preprocessed" / "2d") == []
    run_ok(argv)


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", ["predict_case_done:1", "before_rename:3"])
def test_predict_killed_then_rerun(base, tmp_path, sig, point):
    out = tmp_path / "pred"
    argv = ["predict", str(base.run), "-i", str(base.dataset / "imagesTs"), "-o", str(out), "-c", "2d"]
    rc, err = run_to_drill_and_signal(argv, point, sig)
    check_signal_outcome(rc, err, sig, out)
    first = out / f"{TEST_CASE}.nii.gz"
    assert first.is_file()  # the first case was finished before the kill
    before = first.stat().st_mtime_ns, first.read_bytes()
    r = run_ok(argv)
    assert "1 case(s) already predicted" in r.stdout
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    assert len(list(out.glob("*.nii.gz"))) == 2
    assert hidden(out) == []


def test_second_predict_into_a_busy_folder_is_refused(base, tmp_path):
    out = tmp_path / "pred"
    argv = ["predict", str(base.run), "-i", str(base.dataset / "imagesTs"), "-o", str(out), "-c", "2d"]
    p = start(argv, "predict_case_done:1")
    try:
        wait_for_pause(p)
        second = start(argv, None)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and f"pid {p.pid}" in err and "Traceback" not in err
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()
    assert hidden(out) == []  # SIGTERM released the lock


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", ["evaluate_before_summary:1", "before_rename:1"])
def test_evaluate_killed_keeps_the_earlier_summary(base, tmp_path, sig, point):
    preds = tmp_path / "preds"
    shutil.copytree(base.predictions, preds)
    argv = ["evaluate", str(preds), str(base.dataset / "labelsTs")]
    run_ok(argv)
    earlier = snapshot(preds)
    rc, err = run_to_drill_and_signal(argv, point, sig)
    check_signal_outcome(rc, err, sig, preds)
    visible = {n: v for n, v in snapshot(preds).items() if not n.startswith(".")}
    assert {n: v[1] for n, v in visible.items()} == {n: v[1] for n, v in earlier.items()}  # nothing half-written
    run_ok(argv)
    assert hidden(preds) == []
    assert '"num_cases": 2' in (preds / "summary.json").read_text()
