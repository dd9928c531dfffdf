"""Peak memory (RSS) and time of preprocessing one training case and predicting one case, on a generated float32
volume (default 512x512x200, spacing 0.7x0.7x2.5 mm) resampled to another spacing.

    python benchmarks/memory_inputs.py make  /tmp/mem                 # writes case.nii + label.nii once
    python benchmarks/memory_inputs.py preprocess /tmp/mem [--iso]    # read image+label, crop, normalise, resample
    python benchmarks/memory_inputs.py predict /tmp/mem [--iso]       # full Predictor.predict_files, 1x1x1 conv net

Each stage runs in its own process and prints its peak RSS (ru_maxrss) against the image's float32 size. The
network is a 1x1x1 convolution with 4 classes, so the numbers are those of autoseg's own arrays, not of a network.
``--iso`` resamples to 1 mm in 3D (cubic on the whole volume); otherwise z stays separate (anisotropic path).
Run with PYTHONPATH pointing at the tree to measure (e.g. before/after a change).
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time
from pathlib import Path

import numpy as np


def make(folder: Path, shape=(200, 512, 512)) -> None:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) ** 0.5 + 0 * z
    img = (1000 - r + rng.normal(0, 20, shape)).astype(np.float32)
    lab = (np.digitize(r, [60, 120, 180]) % 4).astype(np.uint8)
    for arr, name in ((img, "case_0000.nii"), (lab, "label.nii")):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing((0.7, 0.7, 2.5))
        sitk.WriteImage(im, str(folder / name))


def _plans(iso: bool):
    import tempfile

    from autoseg.datasets.phantom import make_phantom_dataset
    from autoseg.io.dataset import load_dataset
    from autoseg.planner.fingerprint import extract_fingerprint
    from autoseg.planner.planner import make_plans

    with tempfile.TemporaryDirectory() as tmp:  # plans of the current format, from a tiny phantom (4 classes)
        ds = load_dataset(make_phantom_dataset(Path(tmp) / "d", 2, 0, seed=0, size=32))
        plans = make_plans(ds, extract_fingerprint(ds, 1))
    cfg = plans.configuration("3d_fullres")
    sep = not iso
    res = {"order": 3, "separate_z": sep, "order_z": 0}
    cfg = dataclasses.replace(cfg, spacing=[1.0, 1.0, 1.0] if iso else [2.5, 1.0, 1.0], patch_size=[48, 160, 160],
                              resampling_data=res, resampling_label={**res, "order": 1},
                              resampling_probabilities={**res, "order": 1})
    return dataclasses.replace(plans, configurations={"3d_fullres": cfg}), cfg


def _report(stage: str, folder: Path, t0: float, base_kb: int) -> None:
    image_mb = (folder / "case_0000.nii").stat().st_size / 2 ** 20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{stage}: {time.time() - t0:.1f} s, peak RSS {peak_mb:.0f} MB ({peak_mb / image_mb:.1f}x the float32 image "
          f"of {image_mb:.0f} MB; {(peak_mb - base_kb / 1024) / image_mb:.1f}x above the {base_kb / 1024:.0f} MB "
          "after imports)", flush=True)


def main() -> None:
    stage, folder = sys.argv[1], Path(sys.argv[2])
    if stage == "make":
        make(folder)
        return
    import torch

    from autoseg.inference.predictor import Predictor
    from autoseg.io.images import read_case_images, read_label
    from autoseg.preprocessing.preprocessor import preprocess_image

    torch.set_num_threads(1)
    plans, cfg = _plans("--iso" in sys.argv)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    if stage == "preprocess":
        data, geom = read_case_images([folder / "case_0000.nii"], "case")
        seg, _ = read_label(folder / "label.nii", "case")
        out, seg_out, props = preprocess_image(data, geom, plans, cfg, seg)
        print("preprocessed shape", out.shape, seg_out.shape)
    else:
        net = torch.nn.Conv3d(1, 4, 1).eval()
        pred = Predictor(plans, "3d_fullres", [net], [], torch.device("cpu"), step=1.0, mirror=False, tile_batch=1)
        pred.predict_files([folder / "case_0000.nii"], folder / "pred.nii.gz")
    _report(stage + (" --iso" if "--iso" in sys.argv else ""), folder, t0, base_kb)


if __name__ == "__main__":
    main()
