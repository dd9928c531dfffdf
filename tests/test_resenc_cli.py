"""A residual-encoder U-Net (the resenc-m preset) end to end from the CLI: plan -> train -> predict -> evaluate."""
import json

import pytest
import SimpleITK as sitk
import torch

from autoseg.cli import main


@pytest.mark.slow
def test_resenc_m_plan_train_predict_evaluate(tiny_phantom, tmp_path):
    run = tmp_path / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "--preset", "resenc-m", "-j", "1",
                 "-c", "2d"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["preset"] == "resenc-m"
    arch = plans["configurations"]["2d"]["architecture"]
    assert arch["network_class_name"] == "ResidualEncoderUNet"
    blocks = arch["arch_kwargs"]["n_blocks_per_stage"]
    assert blocks == [1, 3, 4, 6][:len(blocks)]

    assert main(["train", str(run), "-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0", "--no-validation"]) == 0
    ck = torch.load(run / "2d" / "fold_0" / "checkpoint_final.pt", weights_only=True)
    assert ck["architecture"]["network_class_name"] == "ResidualEncoderUNet"
    assert ck["architecture"]["arch_kwargs"]["n_blocks_per_stage"] == blocks
    # the last encoder stage holds its planned number of residual blocks, each with a skip path
    last = len(blocks) - 1
    stage = {k.split(".")[2] for k in ck["network_weights"] if k.startswith(f"encoder.{last}.")}
    assert len(stage) == blocks[-1]
    assert any(k.startswith(f"encoder.{last}.0.conv2") for k in ck["network_weights"])

    preds = tmp_path / "preds"
    assert main(["predict", str(run), "-i", str(tiny_phantom / "imagesTs"), "-o", str(preds), "-c", "2d",
                 "--no-tta"]) == 0
    for p in sorted((tiny_phantom / "imagesTs").glob("*.nii.gz")):
        got = sitk.ReadImage(str(preds / p.name.replace("_0000", "")))
        assert got.GetSize() == sitk.ReadImage(str(p)).GetSize()
    assert main(["evaluate", str(preds), str(tiny_phantom / "labelsTs"), "--dataset-json",
                 str(tiny_phantom / "dataset.json")]) == 0
    assert json.loads((preds / "summary.json").read_text())["num_cases"] == 2
