"""Inference cost per volume: the whole pipeline versus the bare forward passes of the same tiles.

    python benchmarks/inference_bench.py RUN 2d IMAGES_DIR [--fold all] [--repeats 3] [--tile-batch 4 8 16]

For every volume: `Predictor.predict_files` end to end (read, crop, normalise, resample, sliding window with
Gaussian weighting and mirroring, resample the probabilities back, argmax, write) and, separately, only the
network's forward passes over exactly the tiles (and mirrored copies) that the sliding window runs, with no
accumulation. The difference is the pipeline's overhead over that floor. Medians over volumes and repeats.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from autoseg.inference.predictor import Predictor
from autoseg.inference.sliding_window import mirror_combinations, window_starts
from autoseg.io.images import read_case_images
from autoseg.io.workspace import Workspace
from autoseg.preprocessing.preprocessor import preprocess_image


@torch.inference_mode()
def forward_floor(net, x: torch.Tensor, patch, tile_batch: int, mirror: bool = True) -> float:
    is2d = len(patch) == 2
    window = (1, *patch) if is2d else tuple(patch)
    spatial = [max(s, w) for s, w in zip(x.shape[1:], window)]
    starts = [window_starts(s, w, 0.5) for s, w in zip(spatial, window)]
    tiles = list(itertools.product(*starts))
    combos = mirror_combinations(tuple(range(2, 2 + len(patch)))) if mirror else [()]
    xb = torch.zeros((min(tile_batch, len(tiles)), x.shape[0], *patch))
    t = time.perf_counter()
    for i in range(0, len(tiles), tile_batch):
        n = len(tiles[i:i + tile_batch])
        for axes in combos:
            net(torch.flip(xb[:n], axes) if axes else xb[:n])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("config")
    ap.add_argument("images")
    ap.add_argument("--fold", default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile-batch", type=int, nargs="+", default=[4])
    a = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    ws = Workspace.at(a.run)
    files = sorted(Path(a.images).glob("*_0000.nii.gz"))
    for tb in a.tile_batch:
        pred = Predictor.of_configuration(ws, a.config, [a.fold], device="cpu")
        pred.tile_batch = tb
        cfg = pred.plans.configuration(a.config)
        full, floor = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(a.repeats):
                for f in files:
                    case = f.name[: -len("_0000.nii.gz")]
                    t = time.perf_counter()
                    pred.predict_files([f], Path(tmp) / f"{case}.nii.gz")
                    full.append(time.perf_counter() - t)
                    data, geom = read_case_images([f], case)
                    pre, _, _ = preprocess_image(data, geom, pred.plans, cfg)
                    floor.append(forward_floor(pred.networks[0], torch.from_numpy(pre), cfg.patch_size, tb))
        full_m, floor_m = float(np.median(full)), float(np.median(floor))
        print(f"tile_batch {tb}: {len(files)} volumes x {a.repeats}: pipeline {full_m:.2f} s/volume (median), "
              f"bare forward passes {floor_m:.2f} s/volume, overhead {full_m - floor_m:.2f} s "
              f"({100 * (full_m / floor_m - 1):.0f}% over the floor)", flush=True)


if __name__ == "__main__":
    main()
