"""2D PNG datasets are first-class; planning adapts to 2D, multi-channel and isotropic data."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg import api
from autoseg.cli import main

from .conftest import SHARED_DATA


@pytest.fixture(scope="module")
def png_dataset(tiny_phantom, tmp_path_factory):
    """Mid-ventricular phantom slices as 8-bit PNG images and label PNGs."""
    root = tmp_path_factory.mktemp("png") / "Dataset900_PNG"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    n = 0
    for split in ("Tr", "Ts"):
        for p in sorted((tiny_phantom / f"images{split}").glob("*_0000.nii.gz")):
            case = p.name.replace("_0000.nii.gz", "")
            img = sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
            lab = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_phantom / f"labels{split}" / f"{case}.nii.gz")))
            z = img.shape[0] // 3
            im8 = np.clip(img[z] / np.percentile(img[z], 99.5) * 255, 0, 255).astype(np.uint8)
            sitk.WriteImage(sitk.GetImageFromArray(im8), str(root / f"images{split}" / f"{case}_0000.png"))
            if split == "Tr":
                sitk.WriteImage(sitk.GetImageFromArray(lab[z].astype(np.uint8)), str(root / "labelsTr" / f"{case}.png"))
                n += 1
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {
        "background": 0, "RV": 1, "MYO": 2, "LV": 3}, "numTraining": n, "file_ending": ".png"}))
    return root


@pytest.mark.slow
def test_png_end_to_end(png_dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["plan", str(png_dataset), "--out", str(run), "--group-by", r"^(phantom\d+)_", "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert list(plans["configurations"]) == ["2d"]  # 2D data: no 3D configuration
    assert main(["train", str(run), "-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0"]) == 0
    assert (run / "2d" / "fold_0" / "validation" / "summary.json").is_file()
    out = tmp_path / "pred"
    assert main(["predict", str(run), "-i", str(png_dataset / "imagesTs"), "-o", str(out)]) == 0
    for p in (png_dataset / "imagesTs").glob("*.png"):
        pred = sitk.ReadImage(str(out / p.name.replace("_0000", "")))
        assert pred.GetSize() == sitk.ReadImage(str(p)).GetSize() and pred.GetDimension() == 2


def test_sunnybrook_2d_nifti_plans_2d_only(tmp_path):
    ds = SHARED_DATA / "Dataset028_SunnybrookLV"
    if not ds.is_dir():
        pytest.skip(f"real-data test: {ds} is absent")
    plans = api.plan(ds, tmp_path / "run", preprocess_after=False, group_by=r"^([^_]+)_")
    assert list(plans.configurations) == ["2d"]
    assert 1.28 < plans.configurations["2d"].spacing[0] < 1.37


def test_brats_two_channels_isotropic(tmp_path):
    ds = SHARED_DATA / "Dataset029_BraTSSample"
    if not ds.is_dir():
        pytest.skip(f"real-data test: {ds} is absent")
    plans = api.plan(ds, tmp_path / "run", preprocess_after=False, n_folds=5)
    c3 = plans.configurations["3d_fullres"]
    assert plans.num_input_channels == 2 and len(c3.normalization_schemes) == 2
    assert c3.spacing == pytest.approx([1, 1, 1]) and not c3.resampling_data["separate_z"]
    assert all(k == [3, 3, 3] for k in c3.architecture.arch_kwargs["kernel_sizes"])
