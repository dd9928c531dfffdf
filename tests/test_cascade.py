"""The cascade (3d_lowres -> 3d_cascade_fullres) from the CLI on generated isotropic volumes, and its data stream."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.preprocessing.cascade import one_hot, to_next_stage
from autoseg.training.sampling.patches import BatchStream
from autoseg.training.splits import grouped_kfold, save_splits

FAST = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0"]


def _balls(out, n: int = 5, size: int = 32, seed: int = 0):
    """Isotropic 1 mm volumes with a two-label ball (shell 1 around core 2); the last case is the test case."""
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    for i in range(n):
        c, r = rng.uniform(0.4, 0.6, 3) * size, rng.uniform(0.2, 0.25) * size
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        lab = ((d < r).astype(np.uint8) + (d < r / 2)).astype(np.uint8)
        img = (100 + 50 * lab + rng.normal(0, 5, lab.shape)).astype(np.float32)
        tr = "Tr" if i < n - 1 else "Ts"
        for arr, name in ((img, f"images{tr}/ball{i:03d}_0000.nii.gz"), (lab, f"labels{tr}/ball{i:03d}.nii.gz")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 1.0))
            sitk.WriteImage(im, str(out / name))
    (out / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "shell": 1, "core": 2}, "numTraining": n - 1,
        "file_ending": ".nii.gz", "name": "Balls"}))
    return out


def _shrink(run):
    """CI-sized networks: two stages of 8 and 16 features; one tile covers each stage's image."""
    p = json.loads((run / "plans.json").read_text())
    for name, c in p["configurations"].items():
        if name != "2d":
            c["patch_size"] = [24, 24, 24] if name == "3d_lowres" else [32, 32, 32]
            c["architecture"]["arch_kwargs"]["features_per_stage"] = [8, 16]
    (run / "plans.json").write_text(json.dumps(p, indent=1))


@pytest.mark.slow
def test_cascade_end_to_end(tmp_path, capsys):
    data, run = _balls(tmp_path / "data"), tmp_path / "run"
    # a small GPU-memory target shrinks the full-res patch until the planner adds a low-res stage
    assert main(["plan", str(data), "--out", str(run), "--gpu-memory-gb", "0.01", "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())["configurations"]
    assert plans["3d_lowres"]["next_stage"] == "3d_cascade_fullres"
    assert plans["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    assert plans["3d_lowres"]["spacing"][0] > 1.2
    _shrink(run)
    cases = [f"ball{i:03d}" for i in range(4)]
    save_splits(grouped_kfold(cases, {c: c for c in cases}, 2), run / "splits.json")

    capsys.readouterr()
    assert main(["train", str(run), "-c", "3d_cascade_fullres", "-f", "0"] + FAST) == 2
    err = capsys.readouterr().err
    assert "3d_lowres cross-validation prediction" in err and f"autoseg train {run} -c 3d_lowres -f K" in err

    nxt = run / "3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres"
    for k in ("0", "1"):
        assert main(["train", str(run), "-c", "3d_lowres", "-f", k] + FAST) == 0
    for c in cases:  # every case's low-res CV prediction, on the full-res preprocessed grid
        seg, img = np.load(nxt / f"{c}.npy"), np.load(run / "preprocessed" / "3d_fullres" / f"{c}.npy")
        assert seg.shape == img.shape[1:] and seg.dtype == np.int8 and set(np.unique(seg)) <= {0, 1, 2}

    assert main(["train", str(run), "-c", "3d_cascade_fullres", "-f", "0"] + FAST) == 0
    fold = run / "3d_cascade_fullres" / "fold_0"
    assert (fold / "validation" / "summary.json").is_file()
    import torch

    ck = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ck["network_weights"]["encoder.0.0.0.weight"].shape[1] == 1 + 3  # image + one-hot

    preds = tmp_path / "preds"
    assert main(["predict", str(run), "-i", str(data / "imagesTs"), "-o", str(preds), "-c", "3d_cascade_fullres",
                 "--no-tta"]) == 0
    got = sitk.ReadImage(str(preds / "ball004.nii.gz"))
    assert got.GetSize() == (32, 32, 32)
    assert main(["evaluate", str(preds), str(data / "labelsTs"), "--dataset-json", str(data / "dataset.json")]) == 0
    assert json.loads((preds / "summary.json").read_text())["num_cases"] == 1

    _assert_uses_the_first_stage(run, data / "imagesTs" / "ball004_0000.nii.gz", sitk.GetArrayFromImage(got))

    from autoseg.sharing.model_zip import export_files

    # a shared cascade model carries its first stage (all trained low-res folds), whatever -f says
    names = export_files(run, ["3d_cascade_fullres"], ["0"])
    assert {"3d_lowres/fold_0/checkpoint_final.pt", "3d_lowres/fold_1/checkpoint_final.pt",
            "3d_cascade_fullres/fold_0/checkpoint_final.pt"} <= set(names)


def _assert_uses_the_first_stage(run, image, cli_seg: np.ndarray) -> None:
    """The cascade's prediction depends on its first stage: the same prediction twice gives the same
    probabilities (and the CLI's labels), but with the low-res prediction replaced by background everywhere they
    change. A cascade that ignored (or zeroed) the first stage's output would give the same both times."""
    from autoseg import Predictor
    from autoseg.io.images import read_case_images

    pred = Predictor.from_run(run, configuration="3d_cascade_fullres", device="cpu", mirror=False)
    arr, geom = read_case_images([image])
    probs, _ = pred.probabilities(arr.copy(), geom)
    again, _ = pred.probabilities(arr.copy(), geom)
    assert np.array_equal(probs, again)
    seg, _, _ = pred.segment(arr.copy(), geom)
    assert np.array_equal(seg, cli_seg)
    real = pred.previous.target_probabilities

    def background_only(*args, **kwargs):
        p, props = real(*args, **kwargs)
        p.zero_()
        p[0] = 1
        return p, props

    pred.previous.target_probabilities = background_only
    without, _ = pred.probabilities(arr.copy(), geom)
    # measured: probabilities up to 0.96 apart, 44% of the voxels change label (after two training steps)
    assert np.abs(probs - without).max() > 0.1 and (probs.argmax(0) != without.argmax(0)).mean() > 0.01


def _preprocessed_case(folder, case: str, seg: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{case}.npy", (seg[None] * 10.0).astype(np.float32))
    np.save(folder / f"{case}_seg.npy", seg.astype(np.int8))
    locs = {str(k): [list(map(int, v)) for v in np.argwhere(seg == k)[:50]] for k in (1, 2)}
    (folder / f"{case}.json").write_text(json.dumps({"class_locations": locs}))


@pytest.mark.parametrize("augment", [False, True])
def test_previous_stage_becomes_one_hot_input_aligned_with_the_labels(tmp_path, augment):
    """With the first stage's prediction equal to the reference, the extra channels (moved, rotated and mirrored
    with the labels) must be the labels' one-hot encoding; the image channel stays first and the labels one channel."""
    seg = np.zeros((20, 24, 24), np.int8)
    seg[4:16, 6:18, 5:19] = 1
    seg[8:12, 10:14, 9:15] = 2
    _preprocessed_case(tmp_path / "pre", "c", seg)
    (tmp_path / "prev").mkdir()
    np.save(tmp_path / "prev" / "c.npy", seg)
    stream = BatchStream(tmp_path / "pre", ["c"], [16, 16, 16], 2, False, augment, 0,
                         previous_stage=tmp_path / "prev", num_classes=3)
    it = iter(stream)
    for _ in range(4):
        x, y = next(it)
        assert x.shape == (2, 4, 16, 16, 16) and y.shape == (2, 1, 16, 16, 16)
        extra = x[:, 1:].numpy()
        assert set(np.unique(extra)) <= {0.0, 1.0}
        inside = extra.sum(1) == 1  # outside the image every channel is 0 (padding)
        assert np.array_equal(extra.argmax(1)[inside], y[:, 0].numpy()[inside])
        assert inside.mean() > 0.5


def test_previous_stage_of_the_wrong_shape_is_refused(tmp_path):
    from autoseg.core.errors import AutosegError

    seg = np.zeros((20, 24, 24), np.int8)
    seg[5:15, 5:15, 5:15] = 1
    _preprocessed_case(tmp_path / "pre", "c", seg)
    (tmp_path / "prev").mkdir()
    np.save(tmp_path / "prev" / "c.npy", seg[:10])
    with pytest.raises(AutosegError, match="c.npy: shape .* train its folds again"):
        next(iter(BatchStream(tmp_path / "pre", ["c"], [16, 16, 16], 1, False, False, 0,
                              previous_stage=tmp_path / "prev", num_classes=2)))


def test_low_res_probabilities_resample_to_the_full_res_grid():
    """A ball predicted at 2 mm comes back on the 1 mm grid of the same cropped box, as a label map."""
    from types import SimpleNamespace

    zz, yy, xx = np.mgrid[:10, :10, :10]
    ball = (np.sqrt((zz - 4.5) ** 2 + (yy - 4.5) ** 2 + (xx - 4.5) ** 2) < 3).astype(np.float32)
    probs = np.stack([1 - ball, ball])
    props = {"shape_after_crop_transposed": [20, 20, 20], "spacing_transposed": [1.0, 1.0, 1.0],
             "target_spacing": [2.0, 2.0, 2.0]}  # as preprocess_image records them
    cfg = SimpleNamespace(dim=3, spacing=[1.0, 1.0, 1.0])
    seg = to_next_stage(probs, props, cfg, {"order": 1, "separate_z": False, "order_z": 0})
    assert seg.shape == (20, 20, 20) and seg.dtype == np.int8
    z, y, x = np.mgrid[:20, :20, :20]
    ref = np.sqrt((z - 9.5) ** 2 + (y - 9.5) ** 2 + (x - 9.5) ** 2) < 6
    assert (seg.astype(bool) == ref).mean() > 0.97
    assert np.array_equal(one_hot(seg, 2).argmax(0), seg)


def test_submit_orders_the_cascade_after_every_first_stage_fold(tmp_path):
    from autoseg.cluster.graph import train_jobs
    from autoseg.io.workspace import Workspace

    ws = Workspace(tmp_path)
    confs = {"3d_lowres": {"next_stage": "3d_cascade_fullres"},
             "3d_cascade_fullres": {"previous_stage": "3d_lowres", "inherits_from": "3d_fullres"}}
    (tmp_path / "plans.json").write_text(json.dumps({"configurations": confs}))
    jobs = {j.name: j for j in train_jobs(ws, ["3d_lowres", "3d_cascade_fullres"], ["0", "1"], [], None, False)}
    assert jobs["train_3d_cascade_fullres_fold1"].depends_on == ["train_3d_lowres_fold0", "train_3d_lowres_fold1"]
    assert jobs["train_3d_lowres_fold0"].depends_on == []
