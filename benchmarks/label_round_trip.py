"""The labels' round trip through coarser grids for every dataset in ../shared/data: the limit a budget plan puts on
coarsening (``autoseg.preprocessing.resolution``), without planning or timing anything.

    python benchmarks/label_round_trip.py [../shared/data]

Each dataset's 2d configuration is coarsened in-plane from the median spacing of the sampled cases (a plan uses its
own full-resolution spacing, which is close); 3D datasets whose spacing is isotropic (within 3x) are also judged
coarsened on every axis, as their 3d_fullres budget candidates are. Seconds per dataset; prints one line each.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from autoseg.io.dataset import load_dataset
from autoseg.io.images import read_label
from autoseg.planner.budget import SPACING_FACTORS
from autoseg.preprocessing.resolution import MAX_CASES, label_limit


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not root.is_dir():
        print(f"skipped: {root} is absent (the shared datasets live beside the project root)")
        return 0
    for folder in sorted(p for p in root.iterdir() if (p / "dataset.json").is_file()):
        t0 = time.time()
        ds = load_dataset(folder)
        limit = label_limit(ds, [0, 1, 2])
        step = max(1, -(-len(ds.cases) // MAX_CASES))
        spacings = np.array([read_label(ds.label_file(c), c)[1].spacing for c in ds.cases[::step]])
        full = [float(v) for v in np.median(spacings, 0)]
        views = {"2d (in-plane)": (full[1:], [True, True])}
        volumes = read_label(ds.label_file(ds.cases[0]))[0].shape[0] > 1
        if volumes and max(full) / min(full) <= 3:
            views["3d (every axis)"] = (full, [True, True, True])
        for name, (spacing, axes) in views.items():
            allowed, why = limit(spacing, axes, SPACING_FACTORS)
            print(f"{folder.name} {name} ({time.time() - t0:.1f}s): {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
