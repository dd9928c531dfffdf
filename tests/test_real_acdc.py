"""Real-data smoke runs on the shared ACDC set (skipped when ../shared/data is absent)."""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg import api
from autoseg.cli import main

pytestmark = pytest.mark.realdata


@pytest.mark.slow  # fingerprints all 120 ACDC volumes
@pytest.mark.timeout(900)  # minutes on a loaded 2-core machine
def test_acdc_plan_agrees_with_nnunet(tmp_path, acdc):
    plans = api.plan(acdc, tmp_path / "run", preprocess_after=False)
    c2, c3 = plans.configurations["2d"], plans.configurations["3d_fullres"]
    # nnU-Net v2.8.1 on this dataset: 2d 256x224 at 1.5625 mm (batch 52); 3d_fullres 10x256x224 at
    # 10 x 1.5625 x 1.5625 mm, (1,3,3) kernels and in-plane pooling in the first two stages; no 3d_lowres
    assert c2.patch_size == [256, 224] and c2.spacing == pytest.approx([1.5625, 1.5625]) and c2.batch_size == 52
    assert c3.patch_size == [10, 256, 224] and c3.spacing == pytest.approx([10, 1.5625, 1.5625], abs=1e-4)
    k = c3.architecture.arch_kwargs
    assert k["kernel_sizes"][:2] == [[1, 3, 3], [1, 3, 3]] and k["strides"][1:3] == [[1, 2, 2], [1, 2, 2]]
    assert "3d_lowres" not in plans.configurations
    # nnU-Net pools the Dice over the batch in 2d, and in 3d_fullres only when a 3d_lowres exists
    assert c2.batch_dice is True and c3.batch_dice is False
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    for s in splits:  # a patient's ED and ES never straddle folds
        assert {c.split("_")[0] for c in s["val"]}.isdisjoint({c.split("_")[0] for c in s["train"]})


def _subset(acdc, dst, patients):
    for sub in ("imagesTr", "labelsTr"):
        (dst / sub).mkdir(parents=True)
    rows = [r for r in csv.DictReader(open(acdc / "cases.csv")) if r["patient"] in patients]
    for r in rows:
        (dst / "imagesTr" / f"{r['case']}_0000.nii.gz").symlink_to(acdc / "imagesTr" / f"{r['case']}_0000.nii.gz")
        (dst / "labelsTr" / f"{r['case']}.nii.gz").symlink_to(acdc / "labelsTr" / f"{r['case']}.nii.gz")
    dj = json.loads((acdc / "dataset.json").read_text())
    dj["numTraining"] = len(rows)
    (dst / "dataset.json").write_text(json.dumps(dj))
    with open(dst / "cases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_acdc_short_training_predicts_with_input_geometry(tmp_path, acdc):
    patients = sorted({r["patient"] for r in csv.DictReader(open(acdc / "cases.csv"))})
    train_p, test_p = patients[:5], patients[-1:]
    data = _subset(acdc, tmp_path / "acdc_small", set(train_p))
    run = tmp_path / "run"
    assert main(["plan", str(data), "--out", str(run), "-c", "2d", "-j", "2"]) == 0
    # nnU-Net's planned network (32..512 features over 256x224) made small: this checks where the labels land on
    # the input's grid, not accuracy, and the full-size network spent two minutes of the suite predicting
    plans = json.loads((run / "plans.json").read_text())
    kw = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [min(f, 16) // 4 for f in kw["features_per_stage"]]
    (run / "plans.json").write_text(json.dumps(plans))
    assert main(["train", str(run), "-c", "2d", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2"]) == 0
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    for p in sorted((acdc / "imagesTr").glob(f"{test_p[0]}_*_0000.nii.gz")):
        (unseen / p.name).symlink_to(p)
    out = tmp_path / "pred"
    assert main(["predict", str(run), "-i", str(unseen), "-o", str(out), "-c", "2d", "--no-tta"]) == 0
    for p in sorted(unseen.glob("*.nii.gz")):
        ref = sitk.ReadImage(str(p))
        got = sitk.ReadImage(str(out / p.name.replace("_0000", "")))
        assert got.GetSize() == ref.GetSize()
        assert np.allclose(got.GetSpacing(), ref.GetSpacing())
        assert np.allclose(got.GetOrigin(), ref.GetOrigin())
        assert np.allclose(got.GetDirection(), ref.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(got))) <= {0, 1, 2, 3}
