"""Differential planner harness: autoseg's plans against nnU-Net v2's on a seeded family of datasets.

    PYTHONPATH=$PWD python -m benchmarks.plan_diff [--work DIR] [--seed 0] [--only NAME ...] [--refresh]

Generates the datasets (benchmarks/plan_diff/datasets.py) under DIR, runs nnU-Net's planners on them with the
nnU-Net virtual environment's python ($NNUNET_VENV, default /tmp/nnunet_venv) unless DIR already holds their dump
for the same generator (or --refresh), plans them with autoseg, prints a table of every disagreeing field and
exits 1 when a disagreement is not listed as intended (compare.INTENDED).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def nnunet_python() -> Path:
    return Path(os.environ.get("NNUNET_VENV", "/tmp/nnunet_venv")) / "bin" / "python"


def generator_key(seed: int) -> str:
    """Changes whenever the generated datasets or the nnU-Net runner change (then nnU-Net is run again)."""
    h = hashlib.sha256()
    for f in ("datasets.py", "run_nnunet.py"):
        h.update((HERE / f).read_bytes())
    h.update(str(seed).encode())
    return h.hexdigest()[:16]


def prepare(work: Path, seed: int, only: list[str] | None, refresh: bool) -> dict:
    """Generate the datasets and return nnU-Net's dump (cached in work/nnunet_<key>.json)."""
    from benchmarks.plan_diff.datasets import generate

    key = generator_key(seed) + ("" if not only else "_" + hashlib.sha256(" ".join(only).encode()).hexdigest()[:8])
    dump = work / f"nnunet_{key}.json"
    if dump.is_file() and not refresh and (work / "index.json").is_file():
        return json.loads(dump.read_text())
    if work.exists():
        shutil.rmtree(work)
    index = generate(work, seed)
    if only:
        keep = [e for e in index if any(o in e["name"] for o in only)]
        for e in index:
            if e not in keep:
                shutil.rmtree(work / "raw" / e["name"])
        (work / "index.json").write_text(json.dumps(keep))
    py = nnunet_python()
    if not py.is_file():
        raise SystemExit(f"nnU-Net's python not found at {py}: install nnU-Net v2 in a virtual environment and "
                         "point NNUNET_VENV at it")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    subprocess.run([str(py), str(HERE / "run_nnunet.py"), str(work), str(dump)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return json.loads(dump.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/autoseg_plan_diff"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="dataset name substrings (default: all)")
    ap.add_argument("--refresh", action="store_true", help="run nnU-Net again even if its dump is cached")
    ap.add_argument("--json", type=Path, help="also write the disagreements as JSON here")
    args = ap.parse_args(argv)
    nnunet = prepare(args.work, args.seed, args.only, args.refresh)
    from benchmarks.plan_diff.compare import compare_all, summarize

    rows, stats = compare_all(args.work, nnunet)
    print(summarize(rows, stats))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "stats": stats}, indent=1, default=str))
    return 1 if any(not r["intended"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
