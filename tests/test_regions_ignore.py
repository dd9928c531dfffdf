"""Region-based training (labels as lists of values, a sigmoid per region) and the ignore label."""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autoseg.cli import main
from autoseg.core.errors import AutosegError
from autoseg.evaluation.evaluate import evaluate_cases
from autoseg.io.dataset import load_dataset
from autoseg.io.labels import LabelSpec
from autoseg.training.objective.losses import DiceCELoss, RegionDiceBCELoss, region_masks
from autoseg.training.objective.pseudo_dice import pseudo_dice_counts, region_pseudo_dice_counts

BRATS = {"background": 0, "whole tumor": [1, 2, 3, 4], "tumor core": [1, 3, 4], "enhancing tumor": [4]}
NESTED = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "inner": [3]}


def test_region_spec_checks():
    spec = LabelSpec.parse(BRATS, [2, 1, 4], "dataset.json")
    assert spec.has_regions and spec.num_outputs == 3 and spec.label_values == [0, 1, 2, 3, 4]
    bad = [(BRATS, None, "need 'regions_class_order'"), (BRATS, [2, 1], "2 value(s) for 3 region"),
           (BRATS, [2, 1, 7], "[7] are not in any label"), ({"background": 0, "a": 1}, [1], "only for region"),
           ({"background": 0, "ignore": 1, "a": 2}, None, "highest value"),
           ({"background": 0, "a": 1, "ignore": [2]}, None, "one integer"), ({"a": 1}, None, "background as 0"),
           ({"background": 0, "a": "x"}, None, "non-negative integer")]
    for labels, order, msg in bad:
        with pytest.raises(AutosegError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            LabelSpec.parse(labels, order, "dataset.json")
    one = LabelSpec.parse({"background": 0, "a": [1], "b": [2]}, [1, 2], "d")  # one-value regions stay regions
    assert one.has_regions and one.num_outputs == 2 and one.to_json()["a"] == [1]
    ign = LabelSpec.parse({"background": 0, "a": 1, "b": 2, "ignore": 3}, None, "d")
    assert ign.num_outputs == 3 and ign.foreground_values == [1, 2] and ign.ignore_label == 3


def test_region_target_and_label_map_known_answer():
    seg = torch.tensor([0, 1, 2, 3, 4, 2]).view(1, 1, 6)
    spec = LabelSpec.parse(BRATS, [2, 1, 4], "d")
    masks = region_masks(seg, spec.regions)
    assert masks[0].tolist() == [[0, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 1, 0]]
    # nested regions: later regions overwrite earlier ones
    probs = np.array([[0.1, 0.9, 0.9, 0.9, 0.6], [0.2, 0.2, 0.7, 0.8, 0.4], [0.0, 0.1, 0.3, 0.95, 0.9]])
    assert spec.label_map(probs).tolist() == [0, 2, 1, 4, 4]
    nested = LabelSpec.parse(NESTED, [1, 2, 3], "d")
    seg = torch.tensor([0, 1, 2, 3, 3, 1]).view(1, 1, 6)
    assert nested.label_map(region_masks(seg, nested.regions)[0].numpy()).tolist() == [0, 1, 2, 3, 3, 1]


def test_masked_loss_equals_loss_on_the_labelled_subset():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 5, 6)
    seg = torch.randint(0, 3, (1, 1, 4, 5, 6))
    ignored = seg.clone()
    ignored[:, :, :2] = 3  # the first two slices unlabelled
    keep = (ignored != 3)[0, 0]
    sub_logits, sub_seg = logits[..., keep].unsqueeze(-1), seg[..., keep].unsqueeze(-1)  # (1, K, N, 1)
    got = DiceCELoss(ignore_label=3)(logits, ignored)
    want = DiceCELoss()(sub_logits, sub_seg)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, DiceCELoss()(logits, seg))  # the ignored voxels did count before
    spec = LabelSpec.parse({"background": 0, "a": [1, 2], "b": [2], "ignore": 3}, [1, 2], "d")
    got = RegionDiceBCELoss(spec.regions, ignore_label=3)(logits[:, :2], ignored)
    want = RegionDiceBCELoss(spec.regions)(sub_logits[:, :2], sub_seg)
    assert torch.allclose(got, want, atol=1e-6)
    # the gradient never reaches ignored voxels
    lg = logits.clone().requires_grad_(True)
    DiceCELoss(ignore_label=3)(lg, ignored).backward()
    assert lg.grad[..., :2, :, :].abs().max() == 0 and lg.grad[..., 2:, :, :].abs().max() > 0


def test_pseudo_dice_counts_leave_out_ignore_and_count_regions():
    seg = torch.tensor([0, 1, 1, 2, 3]).view(1, 1, 5)
    logits = torch.zeros(1, 3, 5)
    logits[0, 1, [1, 2, 4]] = 5  # predicts label 1 on an ignored voxel too
    assert pseudo_dice_counts(logits, seg, 3, ignore_label=3)[:, 0].tolist() == [2, 0, 0]
    assert pseudo_dice_counts(logits, seg, 3)[:, 0].tolist() == [2, 1, 0]
    reg = torch.full((1, 2, 5), -5.0)
    reg[0, 0, [1, 2, 3]] = 5  # region [1, 2]: all three right
    reg[0, 1, [0, 3]] = 5  # region [2]: one right, one false positive
    counts = region_pseudo_dice_counts(reg, seg, [(1, 2), (2,)], ignore_label=3)
    assert counts.tolist() == [[3, 1], [0, 1], [0, 0]]


def _write(arr, path):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


def test_evaluation_per_region_and_without_ignored_voxels(tmp_path):
    ref = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 1
    ref[0, :2, 2:] = 2
    ref[1] = 4  # second slice: unlabelled
    pred = ref.copy()
    pred[1] = 1  # predictions are dense: label 1 where the reference is unlabelled
    pred[0, :2, 2:] = 1  # label 2 predicted as 1
    _write(ref, tmp_path / "r.nii.gz")
    _write(pred, tmp_path / "p.nii.gz")
    pairs = [("c", tmp_path / "p.nii.gz", tmp_path / "r.nii.gz")]
    s = evaluate_cases(pairs, {"background": 0, "a": 1, "b": 2, "c": 3, "ignore": 4})
    row = s["per_case"][0]
    assert set(s["mean"]) == {"a", "b", "c"}
    assert row["a"]["dice"] == pytest.approx(2 * 4 / (8 + 4))  # the 16 ignored voxels are not false positives
    assert row["b"]["dice"] == 0 and row["c"]["dice"] is None
    s = evaluate_cases(pairs, {"background": 0, "ab": [1, 2], "b": [2], "ignore": 4})
    assert s["per_case"][0]["ab"]["dice"] == 1.0 and s["per_case"][0]["b"]["dice"] == 0


def _region_dataset(root, n=5, size=24):
    """2-channel 3D volumes with three nested spheres: 1 outer shell, 2 middle, 3 core."""
    rng = np.random.default_rng(0)
    for d in ("imagesTr", "labelsTr"):
        (root / d).mkdir(parents=True)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    for i in range(n):
        c = rng.integers(9, size - 9, 3)
        r = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        seg = np.select([r < 3, r < 5, r < 8], [3, 2, 1], 0).astype(np.uint8)
        chans = [seg * 40.0 + rng.normal(0, 5, seg.shape), (seg >= 2) * 80.0 + rng.normal(0, 5, seg.shape)]
        for ch, a in enumerate(chans):
            path = root / "imagesTr" / f"c{i}_{ch:04d}.nii.gz"
            sitk.WriteImage(sitk.GetImageFromArray(a.astype(np.float32)), str(path))
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(root / "labelsTr" / f"c{i}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": NESTED, "regions_class_order": [1, 2, 3],
        "numTraining": n, "file_ending": ".nii.gz"}))
    return root


def test_region_dataset_loads_and_bad_order_is_exit_2(tmp_path, capsys):
    root = _region_dataset(tmp_path / "d", n=2)
    ds = load_dataset(root)
    assert ds.regions_class_order == [1, 2, 3] and ds.label_spec.num_outputs == 3
    dj = json.loads((root / "dataset.json").read_text())
    dj["regions_class_order"] = [1, 2]
    (root / "dataset.json").write_text(json.dumps(dj))
    assert main(["plan", str(root), "--out", str(tmp_path / "run")]) == 2
    assert "regions_class_order has 2 value(s) for 3 region(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_region_training_end_to_end_from_the_cli(tmp_path):
    data = _region_dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["plan", str(data), "--out", str(run), "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["regions_class_order"] == [1, 2, 3] and plans["labels"]["core"] == [2, 3]
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["num_classes"] == 3
    assert main(["train", str(run), "-c", "3d_fullres", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0"]) == 0
    log = [json.loads(x) for x in (run / "3d_fullres" / "fold_all" / "log.jsonl").read_text().splitlines()]
    assert len(log[-1]["pseudo_dice"]) == 3  # one per region
    preds, inputs = tmp_path / "preds", tmp_path / "inputs"
    inputs.mkdir()
    for f in data.glob("imagesTr/c[01]_*"):
        shutil.copy(f, inputs / f.name)
    assert main(["predict", str(run), "-i", str(inputs), "-o", str(preds), "-c", "3d_fullres",
                 "-f", "all", "--no-tta", "--save-probabilities"]) == 0
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(preds / "c0.nii.gz")))
    assert got.shape == (24, 24, 24) and set(np.unique(got)) <= {0, 1, 2, 3}
    probs = np.load(preds / "c0.npz")["probabilities"].astype(np.float32)
    assert probs.shape == (3, 24, 24, 24) and probs.min() >= 0 and probs.max() <= 1
    sure = (np.abs(probs - 0.5) > 0.01).all(0)  # the npz holds float16: leave out votes at the threshold
    rebuilt = LabelSpec.parse(NESTED, [1, 2, 3], "d").label_map(probs)
    assert np.array_equal(rebuilt[sure], got[sure]) and sure.mean() > 0.5
    assert main(["evaluate", str(preds), str(data / "labelsTr"), "--dataset-json", str(data / "dataset.json")]) == 0
    summary = json.loads((preds / "summary.json").read_text())
    assert set(summary["mean"]) == {"whole", "core", "inner"} and summary["num_cases"] == 2


def _unlabel_every_other_slice(folder, ignore):
    for f in sorted(folder.glob("*.nii.gz")):
        img = sitk.ReadImage(str(f))
        a = sitk.GetArrayFromImage(img)
        a[1::2] = ignore
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(img)
        sitk.WriteImage(out, str(f))


@pytest.mark.slow
def test_ignore_label_training_end_to_end_from_the_cli(tiny_phantom, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_phantom, data)
    dj = json.loads((data / "dataset.json").read_text())
    dj["labels"]["ignore"] = 4
    (data / "dataset.json").write_text(json.dumps(dj))
    _unlabel_every_other_slice(data / "labelsTr", 4)
    run = tmp_path / "run"
    assert main(["plan", str(data), "--out", str(run), "-j", "1", "-c", "2d"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["num_classes"] == 4  # no ignore channel
    props = json.loads(next((run / "preprocessed" / "2d").glob("*.json")).read_text())
    assert set(props["class_locations"]) == {"1", "2", "3"}  # patches are never centred on ignored voxels
    assert main(["train", str(run), "-c", "2d", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0"]) == 0
    log = json.loads((run / "2d" / "fold_all" / "log.jsonl").read_text().splitlines()[-1])
    assert len(log["pseudo_dice"]) == 3 and np.isfinite(log["train_loss"])
    preds = tmp_path / "preds"
    assert main(["predict", str(run), "-i", str(data / "imagesTs"), "-o", str(preds), "-c", "2d", "-f", "all",
                 "--no-tta"]) == 0
    for p in preds.glob("*.nii.gz"):  # dense: a label everywhere, ignore nowhere
        assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(p))))) <= {0, 1, 2, 3}
    _unlabel_every_other_slice(data / "labelsTs", 4)
    assert main(["evaluate", str(preds), str(data / "labelsTs"), "--dataset-json", str(data / "dataset.json")]) == 0
    summary = json.loads((preds / "summary.json").read_text())
    assert set(summary["mean"]) == {"RV", "MYO", "LV"}


def test_an_ensemble_of_region_models_thresholds_the_mean_region_probabilities():
    """Averaged sigmoid outputs are thresholded region by region in regions_class_order (an argmax over regions
    would give the wrong labels: every tumour voxel is in 'whole tumour')."""
    from types import SimpleNamespace

    from autoseg.inference.predictor import Predictor
    from autoseg.io.labels import LabelSpec

    spec = LabelSpec.parse({"background": 0, "whole": [1, 2, 3], "core": [1, 3], "enh": [3]}, [2, 1, 3], "test")
    rng = np.random.default_rng(0)

    class Member:  # a trained configuration's predictor, reduced to what the ensemble calls
        def __init__(self, name):
            self.config, self.networks, self.step, self.mirror, self.device = name, [None], 0.5, False, None
            self.plans = SimpleNamespace(label_spec=spec)
            self.probs = rng.random((3, 4, 6, 5)).astype(np.float16)

        def full_probabilities(self, data, geom):
            return self.probs

        def output_names(self):
            return ["whole", "core", "enh"]

    a, b = Member("2d"), Member("3d_fullres")
    seg, probs = Predictor.of_ensemble([a, b], []).segment_full_grid(None, None)
    mean = (a.probs.astype(np.float32) + b.probs.astype(np.float32)) / 2
    assert np.allclose(probs, mean)
    assert np.array_equal(seg, spec.label_map(mean))
    assert set(np.unique(seg)) <= {0, 1, 2, 3} and (seg == 3).any()
