"""Configuration ensembles: validation probabilities kept on request, `find-best` ranks configurations and pair
ensembles, `predict` without -c runs the winner."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg import api
from autoseg.cli import main
from autoseg.io.workspace import Workspace
from autoseg.postprocessing.components import apply_postprocessing
from autoseg.postprocessing.ranking import ensemble_probabilities, held_out_cases, validation_probabilities_path
from autoseg.training.config import TrainConfig

CONFIGS = ["2d", "3d_fullres"]


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory):
    from autoseg.datasets.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("ensdata") / "data", n_train_patients=2, n_test_patients=1,
                                seed=1, size=32)


@pytest.fixture(scope="module")
def trained_run(small_phantom, tmp_path_factory):
    """2d and 3d_fullres, two folds (one patient each), one epoch of two steps, probabilities kept."""
    run = tmp_path_factory.mktemp("ens") / "run"
    api.plan(small_phantom, run, configurations=CONFIGS, num_workers=1, n_folds=2)
    for c in CONFIGS:
        for k in ("0", "1"):
            tc = TrainConfig(epochs=1, iters_per_epoch=2, val_iters=1, batch_size=2, num_workers=0,
                             save_validation_probabilities=True)
            api.train(run, c, k, tc, explicit={"epochs"})
    return run


@pytest.mark.slow
def test_find_best_ranks_pairs_and_predict_runs_the_winner(trained_run, small_phantom, tmp_path, capsys):
    ws = Workspace.at(trained_run)
    cases = held_out_cases(ws)
    case, fold = sorted(cases.items())[0]
    members = [np.load(validation_probabilities_path(ws, c, fold, case))["probabilities"].astype(np.float32)
               for c in CONFIGS]
    assert np.allclose(ensemble_probabilities(ws, CONFIGS, fold, case), (members[0] + members[1]) / 2)
    assert np.allclose(members[0].sum(0), 1, atol=1e-2)

    capsys.readouterr()
    assert main(["find-best", str(trained_run)]) == 0
    out = capsys.readouterr().out
    best = json.loads(ws.best.read_text())
    assert set(best["dice_table"]) == {"2d", "3d_fullres", "2d+3d_fullres"}  # 2 configurations + 1 pair
    assert sum(line.startswith(("| 1 ", "| 2 ", "| 3 ")) or line.split()[:1] in (["1"], ["2"], ["3"])
               for line in out.splitlines()) >= 3
    means = {n: t["mean"] for n, t in best["dice_table"].items()}
    assert best["name"] == max(means, key=means.get)
    assert best["configurations"] == best["dice_table"][best["name"]]["members"]

    # predict without -c runs the winner: the mean of its members' probabilities (each member predicted alone
    # here, its folds ensembled), argmax, the winner's postprocessing; a single winner is asked for as a pair
    img_dir = small_phantom / "imagesTs"
    pair = best["kind"] == "ensemble"
    cmd = ["predict", str(trained_run), "-i", str(img_dir), "-o", str(tmp_path / "w"), "--no-tta"]
    assert main(cmd if pair else cmd + ["-c", *CONFIGS]) == 0
    said = capsys.readouterr().out
    assert (f"best.json's winner {best['name']}" if pair else "ensemble of 2d + 3d_fullres") in said
    for c in CONFIGS:
        api.predict(trained_run, img_dir, tmp_path / c, configuration=c, mirror=False, save_probabilities=True)
    lcc = best["postprocessing"]["lcc_labels"] if pair else []
    labels = np.array(sorted(json.loads(ws.plans.read_text())["labels"].values()))
    written = sorted((tmp_path / "w").glob("*.nii.gz"))
    assert len(written) == 2
    for f in written:
        stem = f.name[: -len(".nii.gz")]
        mean = np.mean([np.load(tmp_path / c / f"{stem}.npz")["probabilities"].astype(np.float32)
                        for c in CONFIGS], axis=0)
        by_hand = labels[np.argmax(mean, 0)]
        by_hand = apply_postprocessing(by_hand, lcc) if lcc else by_hand
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
        assert got.shape == by_hand.shape and (got == by_hand).mean() > 0.999  # float16 ties aside


@pytest.mark.slow
def test_find_best_names_the_flag_when_probabilities_are_missing(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    ws = Workspace.at(run)
    for p in ws.fold_dir("2d", 1).glob("validation/*.npz"):
        p.unlink()
    assert main(["find-best", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--save-validation-probabilities" in err and "fold(s) [1]" in err
    (ws.fold_dir("3d_fullres", 0) / "validation" / "summary.json").unlink()
    assert main(["find-best", str(run), "-c", "3d_fullres"]) == 2
    assert "fold(s) [0] are not validated" in capsys.readouterr().err


def test_save_validation_probabilities_is_a_train_flag():
    from autoseg.cli import _parser

    args = _parser().parse_args(["train", "r", "-c", "2d", "-f", "0", "--save-validation-probabilities"])
    assert args.save_validation_probabilities is True
    assert _parser().parse_args(["train", "r", "-c", "2d", "-f", "0"]).save_validation_probabilities is None


def test_best_json_readers_take_old_records_and_refuse_what_they_cannot_run(tmp_path):
    from autoseg.core.errors import AutosegError
    from autoseg.inference.ensemble import chosen_configurations
    from autoseg.postprocessing.best import read_best, write_best

    ws = Workspace.at(tmp_path)
    assert read_best(ws) is None
    ws.best.write_text(json.dumps({"configuration": "2d", "cv_mean_foreground_dice": 0.9}))  # before ensembles
    assert read_best(ws)["configurations"] == ["2d"]
    table = {"2d+3d_fullres": {"members": ["2d", "3d_fullres"], "dice": {"LV": 0.8}, "mean": 0.8}}
    rec = write_best(ws, ["2d", "3d_fullres"], 0.81, table, {"lcc_labels": [3]}, "find-best")
    assert rec["kind"] == "ensemble" and "configuration" not in rec
    assert read_best(ws)["postprocessing"]["lcc_labels"] == [3]
    assert chosen_configurations(ws, None, None) == (["2d", "3d_fullres"], [3])  # what predict and Predictor run
    ws.best.write_text(json.dumps({"configurations": "2d"}))
    with pytest.raises(AutosegError, match="find-best"):
        read_best(ws)


@pytest.mark.slow
def test_ensemble_prediction_is_locked_resumable_and_never_replaces_inputs(trained_run, small_phantom, tmp_path,
                                                                          capsys):
    """An ensemble goes through the same gate as one configuration: an output that would replace an input is
    refused before anything is written, and a rerun keeps the cases its manifest records."""
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    scan = src / "scan.nii.gz"  # a file without the _0000 suffix, predicted into its own folder
    shutil.copy(sorted((small_phantom / "imagesTs").glob("*_0000.nii.gz"))[0], scan)
    before = scan.read_bytes()
    ens = ["-c", *CONFIGS, "--no-tta"]
    assert main(["predict", str(trained_run), "-i", str(scan), "-o", str(src), *ens]) == 2
    assert "scan.nii.gz" in capsys.readouterr().err and scan.read_bytes() == before
    out = tmp_path / "out"
    cmd = ["predict", str(trained_run), "-i", str(small_phantom / "imagesTs"), "-o", str(out), *ens]
    assert main(cmd) == 0
    manifest = json.loads((out / "predict_manifest.json").read_text())
    assert manifest["signature"]["config"] == "2d+3d_fullres" and len(manifest["done"]) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    capsys.readouterr()
    assert main(cmd) == 0
    assert "2 case(s) already predicted" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == stamps

    from autoseg import Predictor  # the Python API runs the same ensemble

    pred = Predictor.from_run(trained_run, configuration=CONFIGS, device="cpu", mirror=False)
    assert pred.configuration == "2d+3d_fullres"
    for f in sorted((small_phantom / "imagesTs").glob("*_0000.nii.gz")):
        got = sitk.GetArrayFromImage(pred.predict_image(sitk.ReadImage(str(f))))
        cli = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f.name.replace("_0000", ""))))
        assert got.shape == cli.shape and (got == cli).all()


@pytest.mark.slow
def test_crossval_after_find_best_ranks_ensembles_again(trained_run, tmp_path, capsys):
    """A configuration's crossval (run by itself after its last fold) keeps best.json a ranking of ensembles when
    find-best wrote it; without the probabilities that needs, it writes the best single configuration and says so."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    ws = Workspace.at(run)
    assert main(["find-best", str(run)]) == 0
    assert main(["crossval", str(run), "-c", "2d"]) == 0
    best = json.loads(ws.best.read_text())
    assert best["method"] == "find-best" and "2d+3d_fullres" in best["dice_table"]
    for p in ws.fold_dir("3d_fullres", 0).glob("validation/*.npz"):
        p.unlink()
    capsys.readouterr()
    assert main(["crossval", str(run), "-c", "2d"]) == 0
    assert "could not be redone" in capsys.readouterr().out
    assert json.loads(ws.best.read_text())["method"] == "crossval"
