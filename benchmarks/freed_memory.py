"""Training steps with glibc's default allocator thresholds against freed memory kept for reuse (issue 25).

For the configuration a budget plan chose (RUN/plans.json), each round starts two fresh processes in turn, one with
the system's malloc settings and one after ``autoseg.core.allocator.keep_freed_memory``, and times in each the
plan's confirmation window (``StepTimer.confirm``: steps fed by training's number of data workers augmenting random
batches, the mean over ``--window`` seconds after a warm-up) with the page faults and kernel time of the step's
process over the window.

    python benchmarks/freed_memory.py RUN [-c 2d] [--rounds 2] [--window 20]

Run it on an otherwise idle machine; it ends with each column's median and the ratio of the two step times.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from autoseg.core.allocator import keep_freed_memory
from autoseg.core.cpu_share import use_free_cores
from autoseg.core.device import autocast_dtype
from autoseg.core.progress import format_table
from autoseg.training.fit.parts import default_workers
from autoseg.training.step_timing import RandomAugmentedBatches, fed_step_seconds, window_seconds

sys.path.insert(0, str(Path(__file__).parent))
from step_timing_gap import candidate  # noqa: E402


def child(run: Path, config: str, keep: bool, seconds: float) -> dict:
    cfg = json.loads((run / "plans.json").read_text())["configurations"][config]
    if keep:
        keep_freed_memory()
    use_free_cores()
    cpu = torch.device("cpu")
    dtype = autocast_dtype(cpu, cfg.get("budget", {}).get("precision", "fp32"))
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    c = candidate(cfg)
    step = fed_step_seconds(c, cpu, dtype, RandomAugmentedBatches(c), default_workers(cpu),
                            lambda s: window_seconds(s, cpu, seconds))
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    return {"step": step, "faults_per_s": (after.ru_minflt - before.ru_minflt) / wall,
            "kernel_share": (after.ru_stime - before.ru_stime) / max(after.ru_utime - before.ru_utime
                                                                      + after.ru_stime - before.ru_stime, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-c", "--configuration")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    plans = json.loads((a.run / "plans.json").read_text())["configurations"]
    config = a.configuration or next(iter(plans))
    if a.child:
        print(json.dumps(child(a.run, config, a.child == "keep", a.window)))
        return
    results: dict[str, list[dict]] = {"default": [], "keep": []}
    for r in range(a.rounds):
        for mode in ("default", "keep"):
            out = subprocess.run([sys.executable, __file__, str(a.run), "-c", config, "--window", str(a.window),
                                  "--child", mode], capture_output=True, text=True, check=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            results[mode].append(res)
            print(f"round {r + 1} {mode:7s}: {res['step']:.3f} s/step, {res['faults_per_s']:.0f} page faults/s, "
                  f"{res['kernel_share']:.1%} of the step process's CPU time in the kernel", flush=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in v[0]} for m, v in results.items()}
    print(f"\n{config} of {a.run}, {a.rounds} rounds of {a.window:.0f}s windows, medians:")
    print(format_table(["malloc", "s/step", "page faults/s", "kernel time"],
                       [[m, f"{v['step']:.3f}", f"{v['faults_per_s']:.0f}", f"{v['kernel_share']:.1%}"]
                        for m, v in med.items()]))
    print(f"kept / default step time: {med['keep']['step'] / med['default']['step']:.2f}x")


if __name__ == "__main__":
    main()
