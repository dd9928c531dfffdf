"""How much one fixed training step wanders over minutes on this machine (issue 25): the step of one budget
candidate, fed by training's data workers as the plan's confirmation feeds it, run for ``--minutes``; each
``--window`` seconds the window's mean seconds per step and the share of CPU time the hypervisor took (``steal``
in /proc/stat; 0 where the file is absent). At the end, for windows of 1, 2 and 4 consecutive ``--window``s, how
far they part from the whole run's mean, and how far each parts from the mean of the ``--follow`` minutes right
after it (default 10): what a plan-time window of that length can promise about the training that follows.

    python benchmarks/speed_drift.py --patch 160 160 --batch 4 --minutes 8      # CAMUS's whole-image candidate
    python benchmarks/speed_drift.py --minutes 25 --follow 10                   # enough for windows then 10 minutes

Run it on an otherwise idle machine; ``--out FILE`` keeps the windows as JSON."""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from autoseg.core.allocator import keep_freed_memory
from autoseg.core.cpu_share import use_free_cores
from autoseg.core.device import autocast_dtype
from autoseg.core.jsonio import save_json
from autoseg.core.progress import format_table
from autoseg.planner.budget import _arch
from autoseg.training.fit.parts import default_workers
from autoseg.training.step_timing import RandomAugmentedBatches, call_seconds, fed_step_seconds

WARMUP_STEPS = 5


def cpu_ticks() -> tuple[int, int]:
    """(all ticks, stolen ticks) of the machine's CPUs so far."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0, 0
    return sum(fields), fields[7]


def windows(step, minutes: float, window: float) -> list[dict]:
    cpu = torch.device("cpu")
    for _ in range(WARMUP_STEPS):
        call_seconds(step, cpu)
    out: list[dict] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < minutes * 60:
        (all0, steal0), w0, total, n = cpu_ticks(), time.perf_counter(), 0.0, 0
        while time.perf_counter() - w0 < window:
            total += call_seconds(step, cpu)
            n += 1
        all1, steal1 = cpu_ticks()
        out.append({"at": round(time.perf_counter() - t0, 1), "step": total / n, "steps": n,
                    "steal": (steal1 - steal0) / max(all1 - all0, 1)})
        print(f"{out[-1]['at']:6.0f} s  {total / n:.4f} s/step  {n} steps  steal {out[-1]['steal']:.1%}", flush=True)
    return out


def spread(steps: list[float], k: int) -> tuple[int, float, float] | None:
    """(windows of k consecutive ones, their sd as a share of the mean, share beyond 10% of the mean); None when
    there are fewer than k."""
    if len(steps) < k:
        return None
    mean = statistics.fmean(steps)
    w = [statistics.fmean(steps[i:i + k]) for i in range(len(steps) - k + 1)]
    sd = statistics.stdev(w) / mean if len(w) > 1 else 0.0
    return len(w), sd, sum(abs(x / mean - 1) > 0.10 for x in w) / len(w)


def forecast(steps: list[float], k: int, ahead: int) -> tuple[int, float, float, float] | None:
    """A plan's window against the training that follows it: each mean of k consecutive windows against the mean of
    the ``ahead`` windows right after it. (forecasts, share more than 10% off, median and largest |error| as a share
    of what followed); None when the trace is too short for one."""
    n = len(steps) - k - ahead + 1
    if k < 1 or ahead < 1 or n < 1:
        return None
    err = sorted(abs(statistics.fmean(steps[i:i + k]) / statistics.fmean(steps[i + k:i + k + ahead]) - 1)
                 for i in range(n))
    return n, sum(e > 0.10 for e in err) / n, statistics.median(err), err[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch", type=int, nargs="+", default=[160, 160])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--spacing", type=float, default=1.5)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--follow", type=float, default=10.0,
                    help="minutes of training a window forecasts (default: a 10-minute budget)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.minutes <= 0 or a.window <= 0 or a.minutes * 60 < 2 * a.window:
        ap.error(f"--minutes {a.minutes:g} must hold at least two --window {a.window:g} s windows")
    if a.follow <= 0:
        ap.error(f"--follow {a.follow:g}: minutes must be positive")
    keep_freed_memory()  # as training runs
    use_free_cores()
    dim = len(a.patch)
    kw, padded = _arch(dim, (a.spacing,) * dim, a.patch, a.features, a.channels, a.classes)
    c = SimpleNamespace(network_class_name="PlainConvUNet", arch_kwargs=kw, patch_size=list(padded),
                        batch_size=a.batch, dummy_2d=False)
    cpu = torch.device("cpu")
    got: list[dict] = []

    def measure(step) -> float:
        got.extend(windows(step, a.minutes, a.window))
        return 0.0

    fed_step_seconds(c, cpu, autocast_dtype(cpu, a.precision), RandomAugmentedBatches(c), default_workers(cpu),
                     measure)
    steps = [w["step"] for w in got]
    mean = statistics.fmean(steps)
    print(f"\n{list(padded)} x{a.batch}, {a.precision}: {len(steps)} windows of {a.window:g} s, "
          f"mean {mean:.4f} s/step, {min(steps):.4f}-{max(steps):.4f}, "
          f"steal at most {max(w['steal'] for w in got):.1%}")
    rows = []
    for k in (1, 2, 4):
        if (got_k := spread(steps, k)) is not None:
            n, sd, beyond = got_k
            rows.append([f"{k * a.window:g} s", n, f"{sd:.1%}", f"{beyond:.0%}"])
    print(format_table(["window", "windows", "sd / mean", "beyond 10% of the mean"], rows))
    ahead = round(a.follow * 60 / a.window)
    rows = []
    for k in (1, 2, 4):
        if (got_k := forecast(steps, k, ahead)) is not None:
            n, beyond, med, worst = got_k
            rows.append([f"{k * a.window:g} s", n, f"{beyond:.0%}", f"{med:.1%}", f"{worst:.1%}"])
    if rows:
        print(f"\nagainst the {a.follow:g} minutes right after the window (a plan's timing, then its training):")
        print(format_table(["window", "forecasts", "more than 10% off", "median error", "largest"], rows))
    if a.out:
        save_json({"patch": list(padded), "batch": a.batch, "precision": a.precision, "window_seconds": a.window,
                   "windows": got}, a.out)  # whole or not at all


if __name__ == "__main__":
    main()
