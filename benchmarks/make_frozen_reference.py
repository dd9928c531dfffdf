"""Freeze autoseg's behaviour on the phantom, so that a restructuring of the code can be checked to change nothing
(issue 24): the plans `autoseg plan` writes, and the label maps `autoseg predict` writes from a fixed checkpoint.

    python benchmarks/make_frozen_reference.py      # rewrites tests/references/frozen/ (run it only on purpose)

It plans the phantom (5 training patients, seed 1, 48 px) for 2d and 3d_fullres, trains each configuration briefly
(the known-answer recipe: fold all, AdamW at 0.01, seed 0, 4..16 features), keeps the network weights only (no
optimizer state) and predicts the held-out patient. tests/test_frozen_behaviour.py compares against these files.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "references" / "frozen"
CONFIGS = {"2d": (60, 4), "3d_fullres": (30, 2)}  # training steps, batch


def main() -> int:
    from autoseg.cli import main as cli
    from autoseg.datasets.phantom import make_phantom_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = make_phantom_dataset(Path(tmp) / "data", n_train_patients=5, n_test_patients=1, seed=1, size=48)
        run = Path(tmp) / "run"
        assert cli(["plan", str(data), "--out", str(run), "-c", *CONFIGS, "-j", "1"]) == 0
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir(parents=True)
        shutil.copy(run / "plans.json", OUT / "plans_as_planned.json")
        plans = json.loads((run / "plans.json").read_text())
        for c in CONFIGS:
            plans["configurations"][c]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 16]
        (run / "plans.json").write_text(json.dumps(plans, indent=1))
        model = OUT / "run"
        model.mkdir()
        shutil.copy(run / "plans.json", model / "plans.json")
        labels = {}
        for c, (steps, batch) in CONFIGS.items():
            assert cli(["train", str(run), "-c", c, "-f", "all", "--epochs", "1", "--iters-per-epoch", str(steps),
                        "--val-iters", "0", "--batch-size", str(batch), "--optimizer", "adamw", "--lr", "0.01",
                        "--num-workers", "0", "--no-validation", "--seed", "0"]) == 0
            fold = model / c / "fold_all"
            fold.mkdir(parents=True)
            ck = torch.load(run / c / "fold_all" / "checkpoint_final.pt", weights_only=True)
            ck["optimizer_state"] = {}  # not needed to predict; keeps the reference small
            torch.save(ck, fold / "checkpoint_final.pt")
            shutil.copy(run / c / "fold_all" / "config.json", fold / "config.json")
            pred = Path(tmp) / f"pred_{c}"
            assert cli(["predict", str(model), "-c", c, "-f", "all", "-i", str(data / "imagesTs"),
                        "-o", str(pred), "--save-probabilities"]) == 0
            for f in sorted(pred.glob("*.nii.gz")):
                case = f.name[:-len(".nii.gz")]
                labels[f"{c}/{case}"] = sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(np.uint8)
                p = np.sort(np.load(pred / f"{case}.npz")["probabilities"].astype(np.float32), axis=0)
                labels[f"margin:{c}/{case}"] = (p[-1] - p[-2]).astype(np.float16)  # where a label is a near-tie
                print(f"{c} {case}: {int((p[-1] - p[-2] < 1e-3).sum())} voxels with a top-2 margin under 1e-3")
        np.savez_compressed(OUT / "labels.npz", **labels)
    print(f"written {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
