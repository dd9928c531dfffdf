"""Do channels-last, bf16 autocast or torch.compile speed up a training step here? Measured, not assumed.

    python benchmarks/cpu_knobs.py RUN/plans.json [--config 2d] [--steps 8] [--device cpu]

Builds the plan's network at its patch and batch and times forward + backward + SGD steps (median after two
warm-up steps; torch.compile's compilation time is reported separately) for: eager fp32 (what autoseg uses on a
CPU), channels-last, bf16 autocast, and torch.compile.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from autoseg.networks import build_network
from autoseg.training.losses import DeepSupervisionLoss, DiceCELoss


def run(cfg: dict, device: torch.device, steps: int, channels_last=False, bf16=False, compile_=False):
    ak = dict(cfg["architecture"]["arch_kwargs"])
    torch.manual_seed(0)
    net = build_network("PlainConvUNet", ak).to(device)
    loss_fn = DeepSupervisionLoss(DiceCELoss(batch_dice=cfg["batch_dice"]), ak["n_stages"] - 1)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    x = torch.randn(cfg["batch_size"], ak["input_channels"], *cfg["patch_size"], device=device)
    y = torch.randint(0, ak["num_classes"], (cfg["batch_size"], 1, *cfg["patch_size"]), device=device)
    if channels_last:
        fmt = torch.channels_last if len(cfg["patch_size"]) == 2 else torch.channels_last_3d
        net, x = net.to(memory_format=fmt), x.to(memory_format=fmt)
    model = torch.compile(net) if compile_ else net
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times[2:])), times[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("plans")
    ap.add_argument("--config", default="2d")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    cfg = json.load(open(a.plans))["configurations"][a.config]
    dev = torch.device(a.device)
    print(f"{a.config}: patch {cfg['patch_size']} batch {cfg['batch_size']} features "
          f"{cfg['architecture']['arch_kwargs']['features_per_stage']} on {dev} ({torch.get_num_threads()} threads)")
    base = None
    for name, kw in (("eager fp32", {}), ("channels-last", {"channels_last": True}), ("bf16 autocast", {"bf16": True}),
                     ("torch.compile", {"compile_": True})):
        try:
            t, first = run(cfg, dev, a.steps, **kw)
        except Exception as e:  # e.g. no compiler toolchain for torch.compile
            print(f"{name:15s} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        base = base or t
        print(f"{name:15s} {t:.3f} s/step  ratio {t / base:.2f}  (first step {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
