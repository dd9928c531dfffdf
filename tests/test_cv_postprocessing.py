"""The largest-component decision is taken from all folds' validation predictions, per label."""
import json

import pytest
import SimpleITK as sitk

from autoseg import api
from autoseg.io.workspace import Workspace
from autoseg.postprocessing.decide import maybe_decide_postprocessing


def test_lcc_kept_only_for_labels_it_helps(tiny_phantom, tmp_path):
    run = tmp_path / "run"
    api.plan(tiny_phantom, run, preprocess_after=False, num_workers=1)
    ws = Workspace.at(run)
    splits = json.loads(ws.splits.read_text())
    for k, s in enumerate(splits[:4]):
        _write_fold(ws, tiny_phantom, k, s["val"])
    assert maybe_decide_postprocessing(ws, "2d") is None  # fold 4 missing: no decision yet
    _write_fold(ws, tiny_phantom, 4, splits[4]["val"])
    res = maybe_decide_postprocessing(ws, "2d")
    assert res["lcc_labels"] == [3]  # LV had spurious islands; RV and MYO were untouched
    assert res["dice_after"]["LV"] > res["dice_before"]["LV"]
    assert json.loads(ws.postprocessing("2d").read_text())["lcc_labels"] == [3]
    assert ws.cv_summary("2d").is_file()
    best = json.loads((ws.root / "best.json").read_text())
    assert best["configuration"] == "2d" and best["cv_mean_foreground_dice"] > 0.9


def _write_fold(ws, data, k, cases):
    vdir = ws.fold_dir("2d", k) / "validation"
    vdir.mkdir(parents=True)
    for c in cases:
        ref = sitk.ReadImage(str(data / "labelsTr" / f"{c}.nii.gz"))
        a = sitk.GetArrayFromImage(ref)
        a[0, :3, :3] = 3  # a false-positive LV island in a corner
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(ref)
        sitk.WriteImage(img, str(vdir / f"{c}.nii.gz"))
    (vdir / "summary.json").write_text("{}")


def test_crossval_command_ignores_hidden_temporary_files(tiny_phantom, tmp_path, capsys):
    """`autoseg crossval` writes the three results; a killed write's hidden temporary file is not a prediction."""
    from autoseg.cli import main

    run = tmp_path / "run"
    api.plan(tiny_phantom, run, preprocess_after=False, num_workers=1)
    ws = Workspace.at(run)
    splits = json.loads(ws.splits.read_text())
    for k, s in enumerate(splits):
        _write_fold(ws, tiny_phantom, k, s["val"])
    (ws.fold_dir("2d", 0) / "validation" / ".phantom000_frame01.nii.gz.1a2b3c4d.nii.gz").write_bytes(b"partial")
    capsys.readouterr()
    assert main(["crossval", str(run), "-c", "2d"]) == 0
    assert "cross-validation written" in capsys.readouterr().out
    cv = json.loads(ws.cv_summary("2d").read_text())
    assert cv["num_cases"] == sum(len(s["val"]) for s in splits)
    assert json.loads(ws.postprocessing("2d").read_text())["lcc_labels"] == [3]
    assert json.loads((run / "best.json").read_text())["configuration"] == "2d"


def components(seg, label: int) -> list[int]:
    """Sizes of the 26-connected components of ``label``, largest first (scipy, not the code under test)."""
    import numpy as np
    from scipy import ndimage

    lab, n = ndimage.label(seg == label, np.ones((3, 3, 3)))
    return sorted(np.bincount(lab.ravel())[1:].tolist(), reverse=True)


def predict_doubled(model, folder, out, *extra) -> "np.ndarray":  # noqa: F821
    from autoseg.cli import main

    assert main(["predict", str(model), "-i", str(folder), "-o", str(out), "-c", "2d", "--no-tta", *extra]) == 0
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "twohearts.nii.gz")))


def assert_cv_postprocessing_applied(raw, post) -> None:
    """``raw`` (no postprocessing) has two hearts; ``post`` kept the largest LV component only, as
    postprocessing.json says, and left the myocardium's two pieces (neither "no postprocessing" nor the fold-'all'
    prior of every label)."""
    import numpy as np

    lv, myo = components(raw, 3), components(raw, 2)
    assert len(lv) >= 2 and lv[1] > 0.5 * lv[0], lv  # the planted second heart's LV, not a speck
    assert len(myo) >= 2 and myo[1] > 0.5 * myo[0], myo
    assert len(components(post, 3)) == 1 and components(post, 3)[0] == lv[0]
    assert components(post, 2) == myo and components(post, 1) == components(raw, 1)
    changed = raw != post
    assert changed.any() and np.all(raw[changed] == 3) and np.all(post[changed] == 0)


@pytest.mark.slow
def test_predict_applies_the_cross_validation_postprocessing(cv_postprocessed_2d, doubled_heart, tmp_path):
    raw = predict_doubled(cv_postprocessed_2d, doubled_heart, tmp_path / "raw", "--no-postprocessing")
    post = predict_doubled(cv_postprocessed_2d, doubled_heart, tmp_path / "post")
    assert_cv_postprocessing_applied(raw, post)
