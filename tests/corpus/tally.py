"""Tally how a source tree handles every corpus kind (for before/after figures; the test asserts the 'after').

    PYTHONPATH=$PWD python -m tests.corpus.tally /path/to/other/tree   # runs the CLI of that tree
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .generate import KINDS, build_base
from .test_corpus import tree_hash


def outcome(tree: str, argv: list[str], fragment: str, guarded: list[Path], cwd: Path, exit_code: int = 2) -> str:
    before = tree_hash(guarded)
    r = subprocess.run([sys.executable, "-m", "autoseg.cli", *argv], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "PYTHONPATH": tree}, timeout=600)
    if "Traceback" in r.stderr:
        k = "traceback"
    elif exit_code == 0 and r.returncode == 0 and fragment in r.stdout + r.stderr:
        k = "clear error"  # the expected warning (or note) of a kind that is not refused
    elif r.returncode == 0:
        k = "silent (exit 0)"
    elif r.returncode == 2 and fragment in r.stderr:
        k = "clear error"
    else:
        k = f"other message (exit {r.returncode})"
    return k + (" + files under the inputs changed" if tree_hash(guarded) != before else "")


def main() -> None:
    tree = str(Path(sys.argv[1]).resolve())
    root = Path(tempfile.mkdtemp())
    base = build_base(root / "base")
    tally: collections.Counter = collections.Counter()
    for name, (_, build) in sorted(KINDS.items()):
        (root / name).mkdir()
        c = build(base, root / name)
        k = outcome(tree, c.argv, c.fragment, c.guarded + [base.dataset, base.predictions], root, c.exit_code)
        tally[k] += 1
        if k != "clear error":
            print(f"  {name}: {k}")
    print(tree, dict(tally))


if __name__ == "__main__":
    main()
