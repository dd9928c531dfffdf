"""Behaviour frozen before the restructuring of issue 24 (tests/references/frozen/, written by
benchmarks/make_frozen_reference.py at commit 59e0f09): moving code between modules must not change the plans
`autoseg plan` writes for the phantom, nor the labels `autoseg predict` writes from a fixed checkpoint."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

FROZEN = Path(__file__).parent / "references" / "frozen"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from autoseg.datasets.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("frozen") / "data", n_train_patients=5, n_test_patients=1,
                                seed=1, size=48)


def test_plans_unchanged(phantom, tmp_path):
    from autoseg.cli import main

    assert main(["plan", str(phantom), "--out", str(tmp_path / "run"), "-c", "2d", "3d_fullres", "-j", "1",
                 "--no-preprocess"]) == 0
    got = json.loads((tmp_path / "run" / "plans.json").read_text())
    want = json.loads((FROZEN / "plans_as_planned.json").read_text())
    got.pop("dataset_dir"), want.pop("dataset_dir")  # where the phantom was written
    assert got == want


@pytest.mark.parametrize("config", ["2d", "3d_fullres"])
def test_predictions_unchanged(phantom, tmp_path, config):
    """The same checkpoint gives the same label in every voxel, except where the frozen prediction was a near-tie
    between two classes (top-2 probability margin under 1e-3: 2-17 of 23,040 voxels per case here), which a different
    CPU or thread count may tip either way; those may differ in at most 0.1% of the voxels."""
    from autoseg.cli import main

    model = tmp_path / "model"
    shutil.copytree(FROZEN / "run", model)
    out = tmp_path / "pred"
    assert main(["predict", str(model), "-c", config, "-f", "all", "-i", str(phantom / "imagesTs"),
                 "-o", str(out)]) == 0
    ref = np.load(FROZEN / "labels.npz")
    cases = sorted(k.split("/", 1)[1] for k in ref.files if k.startswith(f"{config}/"))
    assert cases == sorted(f.name[:-len(".nii.gz")] for f in out.glob("*.nii.gz"))
    for case in cases:
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        want, margin = ref[f"{config}/{case}"], ref[f"margin:{config}/{case}"].astype(np.float32)
        assert got.shape == want.shape, case
        differ = got != want
        assert not (differ & (margin >= 1e-3)).any(), f"{case}: {int(differ.sum())} voxels changed label"
        assert differ.mean() <= 1e-3, case
