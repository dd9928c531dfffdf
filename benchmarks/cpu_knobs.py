"""Do channels-last, bf16 autocast or torch.compile speed up a training step here? Measured, not assumed.

    python benchmarks/cpu_knobs.py RUN/plans.json [--config 2d] [--steps 8] [--device cpu]

Builds the plan's network at its patch and batch and times forward + backward + SGD steps (median after two
warm-up steps; torch.compile's compilation time is reported separately) for: the default (what autoseg's training
does: fp32 on a CPU, bf16 autocast on CUDA), channels-last, bf16 autocast, and torch.compile.
"""
from __future__ import annotations

import argparse
import json

import torch

from autoseg.planner.budget import Candidate
from autoseg.training.step_timing import median_seconds, training_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("plans")
    ap.add_argument("--config", default="2d")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cfg = json.load(open(a.plans))["configurations"][a.config]
    ak = cfg["architecture"]["arch_kwargs"]
    c = Candidate(tuple(cfg["spacing"]), tuple(cfg["patch_size"]), cfg["batch_size"], ak["features_per_stage"][0],
                  ak, 0.0, network_class_name=cfg["architecture"]["network_class_name"])
    dev = torch.device(a.device)
    print(f"{a.config}: patch {cfg['patch_size']} batch {cfg['batch_size']} features {ak['features_per_stage']} on "
          f"{dev} ({torch.get_num_threads()} threads)")
    base = None
    for name, kw in (("eager (default)", {}),
                     ("channels-last", {"channels_last": True}), ("bf16 autocast", {"autocast_dtype": torch.bfloat16}),
                     ("torch.compile", {"compile_network": True}),
                     ("bf16 + channels-last", {"autocast_dtype": torch.bfloat16, "channels_last": True}),
                     ("bf16 + compile", {"autocast_dtype": torch.bfloat16, "compile_network": True})):
        torch.manual_seed(0)
        try:
            t, first = median_seconds(training_step(c, dev, cfg["batch_dice"], **kw), dev, a.steps, warmup=2)
        except Exception as e:  # e.g. no compiler toolchain for torch.compile
            print(f"{name:20s} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        base = base or t
        print(f"{name:20s} {t:.3f} s/step  ratio {t / base:.2f}  (first step {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
