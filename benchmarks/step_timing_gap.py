"""Where does a budget plan's step time part from the step training really runs? (issue 25)

For the configuration a budget plan chose (RUN/plans.json, preprocessed), in alternating rounds:

- ``plan model``: what the planner adds up on a CPU: the bare step (forward, backward, optimiser) on fixed data plus
  the time a data worker takes to make one augmented batch of random data (``step_timing.time_augmentation``), each
  timed alone;
- ``live worker``: steps fed by a data-loading process that augments random batches while the step computes
  (``step_timing.pipeline_seconds``), so both share the cores as in training;
- ``real batch``: one batch as the training worker makes it from the run's preprocessed cases (cut, oversample
  foreground, augment; mean of ``--batches``, on one thread), beside the planner's ``augment`` on random data;
- ``confirmed``: what the plan now times for its chosen candidate (``StepTimer.confirm``): steps fed by training's
  own number of workers augmenting random batches, the mean over ``--window`` seconds after a warm-up;
- ``confirmed, real``: the same window with the workers making batches from the run's preprocessed cases instead
  (which the plan cannot do: it runs before preprocessing), to tell random data from the rest of the gap;
- ``training``: the real thing: `train` for a few short epochs on the run's preprocessed cases (fold all, no
  validation), seconds per step of its later epochs (log.jsonl ``train_seconds / iterations``).

    python benchmarks/step_timing_gap.py RUN [-c 2d] [--rounds 3] [--iters 40] [--window 15]

Run it on an otherwise idle machine; the table ends with each column's median and its ratio to the plan's figure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from types import SimpleNamespace

import torch

from autoseg import api
from autoseg.core.cpu_share import use_free_cores
from autoseg.core.device import autocast_dtype
from autoseg.core.progress import format_table
from autoseg.training.config import BUDGET_OPTIMIZER, TrainConfig
from autoseg.training.fit.parts import default_workers
from autoseg.training.sampling.patches import BatchStream
from autoseg.training.step_timing import (
    TIMED_STEPS,
    StepTimer,
    fed_step_seconds,
    mean_batch_seconds,
    median_seconds,
    pipeline_seconds,
    time_augmentation,
    training_step,
    window_seconds,
)


def candidate(cfg: dict) -> SimpleNamespace:
    arch = cfg["architecture"]
    return SimpleNamespace(network_class_name=arch["network_class_name"], arch_kwargs=arch["arch_kwargs"],
                           patch_size=cfg["patch_size"], batch_size=cfg["batch_size"],
                           dummy_2d=len(cfg["patch_size"]) == 3 and bool(cfg["resampling_data"]["separate_z"]))


def training_seconds(run: Path, config: str, iters: int) -> float:
    """Seconds per step of epochs 2-3 of a real (budget-less) training on the run's data."""
    fold = run / config / "fold_all"
    shutil.rmtree(fold, ignore_errors=True)
    tc = TrainConfig(epochs=3, iters_per_epoch=iters, val_iters=1, final_validation=False, save_every=100,
                     optimizer=BUDGET_OPTIMIZER)  # what a budget trains (and the plan times) with
    api.train(run, config, "all", tc, explicit={"epochs", "iters_per_epoch", "val_iters", "final_validation",
                                                "optimizer"})
    log = [json.loads(line) for line in (fold / "log.jsonl").read_text().splitlines()]
    shutil.rmtree(fold, ignore_errors=True)
    return statistics.median(r["train_seconds"] / r["iterations"] for r in log[1:])


def real_stream(run: Path, config: str, cfg: dict, c: SimpleNamespace) -> BatchStream:
    """Augmented batches from the run's preprocessed cases, as the training worker makes them."""
    folder = run / "preprocessed" / config
    cases = sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}_seg.npy").is_file())
    return BatchStream(folder, cases, list(cfg["patch_size"]), cfg["batch_size"], c.dummy_2d, True, 0)


def confirmed_real(run: Path, config: str, cfg: dict, c: SimpleNamespace, dtype, seconds: float) -> float:
    """``StepTimer.confirm``'s window, fed by training's number of workers cutting and augmenting real batches."""
    cpu = torch.device("cpu")
    return fed_step_seconds(c, cpu, dtype, real_stream(run, config, cfg, c), default_workers(cpu),
                            lambda step: window_seconds(step, cpu, seconds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("-c", "--configuration")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--window", type=float, default=15.0, help="seconds of the confirmation windows")
    a = ap.parse_args()
    plans = json.loads((a.run / "plans.json").read_text())
    config = a.configuration or (plans.get("recommendation") or {}).get("configuration") or "2d"
    cfg = plans["configurations"][config]
    b = cfg.get("budget") or {}
    cpu = torch.device("cpu")
    dtype = autocast_dtype(cpu, b.get("precision", "fp32"))
    c = candidate(cfg)
    rows, cols = [], {"plan model": [], "bare + real batch": [], "live worker": [], "confirmed": [],
                      "confirmed, real": [], "training": []}
    timer = StepTimer(cpu)
    timer.precision = b.get("precision", "fp32")
    for r in range(a.rounds):
        use_free_cores()  # the threads the planner and training take: the cores other processes leave free
        bare = median_seconds(training_step(c, cpu, autocast_dtype=dtype), cpu, TIMED_STEPS)[0]
        aug = time_augmentation(c)
        n_cases = len(list((a.run / "preprocessed" / config).glob("*_seg.npy")))
        # untimed first: a batch per case or so, as training reads each case's properties once
        batch = mean_batch_seconds(iter(real_stream(a.run, config, cfg, c)), a.batches,
                                   warm=-(-n_cases // cfg["batch_size"]))
        live = pipeline_seconds(c, cpu, dtype)
        conf = timer.confirm(c, a.window)
        conf_real = confirmed_real(a.run, config, cfg, c, dtype, a.window)
        real = training_seconds(a.run, config, a.iters)
        for k, v in (("plan model", bare + aug), ("bare + real batch", bare + batch), ("live worker", live),
                     ("confirmed", conf), ("confirmed, real", conf_real), ("training", real)):
            cols[k].append(v)
        rows.append([r + 1] + [round(v, 4) for v in (bare, aug, batch, bare + aug, live, conf, conf_real, real)])
        print(format_table(["round", "bare step", "augment", "real batch", "plan model",
                            "live worker", "confirmed", "confirmed, real", "training"], rows), flush=True)
    planned = b.get("seconds_per_step")
    med = {k: statistics.median(v) for k, v in cols.items()}
    print(f"\n{a.run.name} {config}: the plan recorded {planned} s/step in {b.get('precision')}")
    print(format_table(["", "median s/step", "x plan's figure", "x training"], [
        [k, round(v, 4), round(v / planned, 3) if planned else "-", round(v / med["training"], 3)]
        for k, v in med.items()]))


if __name__ == "__main__":
    main()
