"""Every kind of the bad-input corpus through the CLI: exit 2, a message naming the file or case, no traceback, and
no input or earlier result changed (the few warned-about kinds: exit 0 and the warning).

Most kinds run ``autoseg.cli.main`` in this process (an exception escaping it is the traceback a user would see):
a subprocess per kind cost most of the suite's time and proves nothing more, as the kill drills and the end-to-end
tests run the real ``python -m autoseg.cli``. A kind whose check, were it broken, would allocate hundreds of GB
runs as a subprocess.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .generate import KINDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def base(corpus_base):  # tests/conftest.py
    return corpus_base


def tree_hash(folders: list[Path]) -> dict[str, str]:
    """Content hash of every file (hidden ones included) under the given folders."""
    out = {}
    for d in folders:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "autoseg.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


def run_in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """``autoseg.cli.main(argv)`` here, its output captured; torch's thread count (predict sets it) restored."""
    import torch

    from autoseg.cli import main

    out, err, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())


def test_corpus_is_large_and_covers_every_command():
    commands = [c for c, _ in KINDS.values()]
    assert len(KINDS) >= 40
    assert {"verify", "plan", "preprocess", "predict", "evaluate"} <= set(commands)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_input_is_refused_cleanly(name, base, tmp_path):
    command, build = KINDS[name]
    case = build(base, tmp_path)
    assert case.argv[0] == command
    guarded = case.guarded + [base.dataset, base.predictions]
    before = tree_hash(guarded)
    try:  # a lock holder (if any) ends after the checks: its lock file is part of the guarded folders
        r = (run_cli if case.subprocess else run_in_process)(case.argv)
        assert "Traceback" not in r.stderr, r.stderr
        assert r.returncode == case.exit_code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        if case.exit_code == 2:
            assert case.fragment in r.stderr, r.stderr
            assert f"autoseg {command}: error:" in r.stderr
        else:  # accepted: the warning (on stderr) or the note
            assert case.fragment in r.stdout + r.stderr, (r.stdout[-2000:], r.stderr[-2000:])
        assert not [p for p in case.gone if p.exists()]
        assert tree_hash(guarded) == before
        leftovers = [p for d in guarded if Path(d).is_dir() for p in Path(d).rglob(".*")
                     if ".autoseg-tmp-" in p.name or (p.name == ".autoseg.lock" and "locked" not in name)]
        assert not leftovers
    finally:
        case.release()
