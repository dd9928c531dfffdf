"""How many compute threads should training use when another CPU-heavy process shares the machine?

Times training steps of one configuration of a plans.json (network, patch, batch as planned) with each thread
count, first on the idle machine, then with a second process beside it that runs the same training step in a loop
with every core (another training, as in issue 15's busy run). Thread counts alternate round by round so that both
see the same load; the table gives the median seconds per step.

    python benchmarks/busy_threads.py RUN/plans.json 2d [--rounds 3] [--steps 6]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from types import SimpleNamespace

import torch

from autoseg.training.step_timing import median_seconds, training_step


def candidate(plans_path: str, config: str) -> SimpleNamespace:
    cfg = json.loads(open(plans_path).read())["configurations"][config]
    arch = cfg["architecture"]
    return SimpleNamespace(network_class_name=arch["network_class_name"], arch_kwargs=arch["arch_kwargs"],
                           patch_size=cfg["patch_size"], batch_size=cfg["batch_size"], dummy_2d=False)


def _load(plans_path: str, config: str, threads: int, stop) -> None:
    torch.set_num_threads(threads)
    step = training_step(candidate(plans_path, config), torch.device("cpu"))
    while not stop.is_set():
        step()


def measure(c: SimpleNamespace, counts: list[int], rounds: int, steps: int) -> dict[int, list[float]]:
    cpu = torch.device("cpu")
    step = training_step(c, cpu)
    out: dict[int, list[float]] = {t: [] for t in counts}
    for _ in range(rounds):
        for t in counts:
            torch.set_num_threads(t)
            out[t].append(median_seconds(step, cpu, steps, warmup=1)[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("plans")
    ap.add_argument("config")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    counts = sorted({1, max(1, cores // 2), cores})
    c = candidate(a.plans, a.config)
    print(f"{a.config}: patch {c.patch_size}, batch {c.batch_size}; {cores} cores; thread counts {counts}", flush=True)
    idle = measure(c, counts, a.rounds, a.steps)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    other = ctx.Process(target=_load, args=(a.plans, a.config, cores, stop), daemon=True)
    other.start()
    time.sleep(20)  # the other process is built and running
    busy = measure(c, counts, a.rounds, a.steps)
    stop.set()
    other.join(timeout=60)
    print("threads | idle s/step (median) | busy s/step (median) | busy / idle")
    for t in counts:
        i, b = statistics.median(idle[t]), statistics.median(busy[t])
        print(f"{t} | {i:.3f} | {b:.3f} | {b / i:.2f}")


if __name__ == "__main__":
    main()
