"""Does the budget planner's fp32/bf16 choice hold on a busy CPU? Times the planner's cheapest 2D candidate of a
plan in fp32 and in bf16 autocast, REPEATS times each way: one precision after the other (median of 6 steps each,
as the planner did before 927d64c) and in alternation (``alternating_medians``, as it does now), first on the
idle machine, then beside a second process that runs a training step in a loop with every core (busy_threads.py's
load). Prints every ratio bf16/fp32 and how many would have chosen bf16 (ratio <= BF16_GAIN).

    PYTHONPATH=. python benchmarks/bf16_choice_busy.py RUN/plans.json [--repeats 8]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import busy_threads  # noqa: E402

from autoseg.planner import budget as B  # noqa: E402
from autoseg.training import step_timing as T  # noqa: E402


def cheapest(plans_path: str):
    cfg = json.loads(open(plans_path).read())["configurations"]["2d"]
    kw = cfg["architecture"]["arch_kwargs"]  # the planned patch stands in for the median image
    cands = B.candidates(cfg["spacing"], cfg["patch_size"], 8, kw["input_channels"], kw["num_classes"],
                         coarsen_all=True)
    return min(cands, key=lambda c: c.macs * c.batch_size)


def ratios(c, repeats: int) -> tuple[list[float], list[float]]:
    cpu = torch.device("cpu")
    fp32, bf16 = T.training_step(c, cpu), T.training_step(c, cpu, autocast_dtype=torch.bfloat16)
    seq, alt = [], []
    for _ in range(repeats):
        f = T.median_seconds(fp32, cpu, T.TIMED_STEPS)[0]
        b = T.median_seconds(bf16, cpu, T.TIMED_STEPS)[0]
        seq.append(b / f)
        f, b = T.alternating_medians([fp32, bf16], T.COMPARE_ROUNDS)
        alt.append(b / f)
    return seq, alt


def report(name: str, seq: list[float], alt: list[float]) -> None:
    for how, r in (("one after the other", seq), ("alternating", alt)):
        n = sum(x <= T.BF16_GAIN for x in r)
        print(f"{name:5s} {how:20s} bf16/fp32 {' '.join(f'{x:.2f}' for x in r)}  -> bf16 in {n} of {len(r)}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("plans")
    ap.add_argument("--repeats", type=int, default=8)
    a = ap.parse_args()
    c = cheapest(a.plans)
    cores = os.cpu_count() or 1
    torch.set_num_threads(1)  # what the planner uses beside a process that keeps every core busy
    print(f"cheapest candidate: {c.describe()}; 1 compute thread; {cores} cores", flush=True)
    report("idle", *ratios(c, a.repeats))
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    other = ctx.Process(target=busy_threads._load, args=(a.plans, "2d", cores, stop), daemon=True)
    other.start()
    time.sleep(20)
    report("busy", *ratios(c, a.repeats))
    stop.set()
    other.join(timeout=60)


if __name__ == "__main__":
    main()
