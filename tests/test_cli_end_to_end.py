"""The CLI end to end on a tiny phantom: plan, train (2d and 3d), resume, predict, evaluate."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autoseg.cli import main


@pytest.fixture(scope="module")
def run(tiny_phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(out), "-j", "1"]) == 0
    return out


def test_plan_outputs(run):
    plans = json.loads((run / "plans.json").read_text())
    assert set(plans["configurations"]) == {"2d", "3d_fullres"}
    assert plans["configurations"]["3d_fullres"]["resampling_data"]["separate_z"] is True
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits) == 5
    for s in splits:  # ED and ES of a patient stay together
        assert {c.split("_")[0] for c in s["val"]}.isdisjoint({c.split("_")[0] for c in s["train"]})
    assert len(list((run / "preprocessed" / "2d").glob("phantom*.json"))) == 10


@pytest.mark.slow
def test_train_predict_evaluate_2d(run, tiny_phantom, tmp_path, capsys):
    args = ["train", str(run), "-c", "2d", "-f", "0", "--epochs", "2", "--iters-per-epoch", "3", "--val-iters", "1",
            "--batch-size", "2", "--save-every", "1"]
    assert main(args) == 0
    fold = run / "2d" / "fold_0"
    for f in ("checkpoint_final.pt", "checkpoint_best.pt", "progress.png", "log.jsonl", "config.json",
              "validation/summary.json"):
        assert (fold / f).is_file(), f
    ck = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ck["epoch"] == 2 and "network_weights" in ck
    assert len((fold / "log.jsonl").read_text().splitlines()) == 2
    out = capsys.readouterr().out
    assert "epoch    2/2" in out and "data wait" in out

    # resume: extend the schedule from a latest checkpoint, with the optimiser it was trained with
    ck["epoch"] = 1
    torch.save(ck, fold / "checkpoint_latest.pt")
    assert main(args[:-4] + ["--resume", "--no-validation", "--optimizer", "adamw"]) == 2
    assert "trained with the sgd optimiser; resume it with --optimizer sgd" in capsys.readouterr().err
    assert main(args[:-4] + ["--resume", "--no-validation"]) == 0
    assert "resuming 2d fold 0 at epoch 1" in capsys.readouterr().out

    preds = tmp_path / "preds"
    assert main(["predict", str(run), "-i", str(tiny_phantom / "imagesTs"), "-o", str(preds), "-c", "2d",
                 "-f", "0", "--save-probabilities"]) == 0
    for p in sorted((tiny_phantom / "imagesTs").glob("*.nii.gz")):
        case = p.name.replace("_0000.nii.gz", "")
        ref, got = sitk.ReadImage(str(p)), sitk.ReadImage(str(preds / f"{case}.nii.gz"))
        assert got.GetSize() == ref.GetSize()
        assert np.allclose(got.GetSpacing(), ref.GetSpacing())
        assert np.allclose(got.GetOrigin(), ref.GetOrigin())
        assert np.allclose(got.GetDirection(), ref.GetDirection())
        probs = np.load(preds / f"{case}.npz")["probabilities"]
        assert probs.shape == (4,) + sitk.GetArrayFromImage(ref).shape
        assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=1e-2)
    # a single file works too
    one = next((tiny_phantom / "imagesTs").glob("*.nii.gz"))
    assert main(["predict", str(run), "-i", str(one), "-o", str(tmp_path / "single"), "-c", "2d", "--no-tta"]) == 0
    assert len(list((tmp_path / "single").glob("*.nii.gz"))) == 1

    assert main(["evaluate", str(preds), str(tiny_phantom / "labelsTs"), "--dataset-json",
                 str(tiny_phantom / "dataset.json")]) == 0
    summary = json.loads((preds / "summary.json").read_text())
    assert set(summary["mean"]) == {"RV", "MYO", "LV"} and summary["num_cases"] == 2
    assert (preds / "summary.csv").read_text().startswith("case,patient,phase,RV_dice")
    # the probabilities predict saved are what evaluate's AUC reads
    assert main(["evaluate", str(preds), str(tiny_phantom / "labelsTs"), "--dataset-json",
                 str(tiny_phantom / "dataset.json"), "--vessel-label", "LV", "--out", str(tmp_path / "ev")]) == 0
    vessels = json.loads((tmp_path / "ev" / "summary.json").read_text())["vessels"]
    assert vessels["cases_without_probabilities"] == [] and all(0 <= r["auc"] <= 1 for r in vessels["per_case"])


@pytest.mark.slow
def test_train_3d_fold_all(run):
    assert main(["train", str(run), "-c", "3d_fullres", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0"]) == 0
    assert (run / "3d_fullres" / "fold_all" / "checkpoint_final.pt").is_file()


def test_errors_are_clear(run, tmp_path, capsys):
    assert main(["train", str(tmp_path), "-c", "2d", "-f", "0"]) == 2
    assert "no plans.json" in capsys.readouterr().err
    assert main(["train", str(run), "-c", "3d_cascade", "-f", "0"]) == 2
    assert "not in the plans" in capsys.readouterr().err
    assert main(["predict", str(run), "-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "-c", "2d"]) == 2
    assert "input not found" in capsys.readouterr().err


def test_predict_settings_are_keywords(tmp_path):
    """`api.predict(run, input, output, *, ...)`: a configuration passed by position is refused before anything
    is read or written (thirteen positional settings were too easy to shift by one)."""
    from autoseg import api

    with pytest.raises(TypeError, match="positional"):
        api.predict(tmp_path, tmp_path, tmp_path / "out", "2d")
    assert not (tmp_path / "out").exists()


def test_worker_errors_surface_with_the_real_message(run):
    """A failing data worker must raise its own error in the trainer, not 'workers are no longer alive'."""
    from autoseg.training.sampling.patches import BatchStream, make_loader

    folder = run / "preprocessed" / "2d"
    stream = BatchStream(folder, ["phantom000_frame01"], [32, 32], 2, False, True, 0)
    victim = folder / "phantom000_frame01_seg.npy"
    saved = victim.read_bytes()
    victim.write_bytes(b"not a numpy file")
    try:
        with pytest.raises(Exception, match="(?s)phantom000_frame01_seg.npy|pickle|Failed to interpret"):
            next(iter(make_loader(stream, 1, False)))
    finally:
        victim.write_bytes(saved)


@pytest.mark.slow
def test_distributed_training_two_processes_on_cpu(run):
    """DistributedDataParallel over the gloo backend: two processes share the batch; rank 0 writes the results."""
    assert main(["train", str(run), "-c", "2d", "-f", "1", "--num-gpus", "2", "--device", "cpu", "--epochs", "2",
                 "--iters-per-epoch", "2", "--val-iters", "1", "--batch-size", "4", "--num-workers", "0",
                 "--no-validation"]) == 0
    fold = run / "2d" / "fold_1"
    assert json.loads((fold / "config.json").read_text())["world_size"] == 2
    assert len((fold / "log.jsonl").read_text().splitlines()) == 2  # one writer, not two
    ck = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ck["network_weights"])  # plain weights, loadable anywhere


def test_preprocessing_resumes_and_redoes_after_replanning(tiny_phantom, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    folder = run / "preprocessed" / "2d"
    (folder / "phantom001_frame01.json").unlink()  # as if interrupted before this case finished
    before = (folder / "phantom000_frame01.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["preprocess", str(run), "-c", "2d", "-j", "1"]) == 0
    assert (folder / "phantom001_frame01.json").is_file()
    assert (folder / "phantom000_frame01.npy").stat().st_mtime_ns == before  # finished cases are skipped
    assert main(["preprocess", str(run), "-c", "2d"]) == 0
    assert "already done" in capsys.readouterr().out
    # a memory target changes patch and batch only: the preprocessed cases stay valid
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "-j", "1", "--gpu-memory-gb", "2"]) == 0
    assert "plans changed" not in capsys.readouterr().out
    # a hand-edited target spacing invalidates what was preprocessed under the old plans
    plans = json.loads((run / "plans.json").read_text())
    plans["configurations"]["2d"]["spacing"] = [2.5, 2.5]
    (run / "plans.json").write_text(json.dumps(plans))
    assert main(["preprocess", str(run), "-c", "2d", "-j", "1"]) == 0
    assert "plans changed" in capsys.readouterr().out
    assert np.load(folder / "phantom000_frame01.npy").shape[-1] < 48


@pytest.mark.slow
def test_train_preprocesses_only_what_is_missing(small_planned_run, tmp_path, capsys):
    """A run planned with --no-preprocess (or 3d_lowres, preprocessed on request) is preprocessed by its first
    `train`; a later `train` finds the data complete under the current plans and leaves preprocessing alone."""
    import shutil

    from autoseg.io.dataset import load_dataset
    from autoseg.planner.plans import Plans
    from autoseg.preprocessing.preprocessor import is_preprocessed

    run = tmp_path / "run"
    shutil.copytree(small_planned_run, run, ignore=shutil.ignore_patterns("preprocessed"))
    plans = Plans.load(run / "plans.json")
    cases = load_dataset(plans.dataset_dir).cases
    folder = run / "preprocessed" / "2d"
    assert not is_preprocessed(cases, plans, "2d", folder)
    quick = ["-c", "2d", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--batch-size", "2",
             "--num-workers", "0", "--no-validation"]
    capsys.readouterr()
    assert main(["train", str(run), "-f", "0", *quick]) == 0
    assert "preprocess 2d" in "".join(capsys.readouterr()) and is_preprocessed(cases, plans, "2d", folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["train", str(run), "-f", "1", *quick]) == 0
    assert "preprocess 2d" not in "".join(capsys.readouterr())
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


@pytest.mark.slow
def test_fold_all_keeps_the_largest_piece_of_labels_that_are_one_piece_in_training(small_run, tiny_phantom,
                                                                                     tmp_path, capsys):
    """-f all has no cross-validation to decide postprocessing from: the labels that are one piece in the training
    references (the fingerprint counts them) keep their largest component.
    An almost untrained network scatters islands, so without the rule the labels would come in several pieces.
    A fresh run: with other folds trained, predict ensembles them all, and the rule is for fold 'all' alone."""
    import cc3d

    run = small_run

    from autoseg.postprocessing.components import single_piece_labels

    fp = json.loads((run / "fingerprint.json").read_text())
    assert all(c["components_per_label"]["2"] == c["components_per_label"]["3"] == 1 for c in fp["cases"])
    chosen = single_piece_labels(fp, {"background": 0, "RV": 1, "MYO": 2, "LV": 3})
    assert chosen[-2:] == [2, 3]  # the phantom's RV is cut in pieces in a few cases; MYO and LV never
    assert main(["train", str(run), "-c", "2d", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0"]) == 0
    capsys.readouterr()
    raw, kept = tmp_path / "raw", tmp_path / "kept"
    args = ["-i", str(tiny_phantom / "imagesTs"), "-c", "2d", "-f", "all", "--no-tta"]
    assert main(["predict", str(run), *args, "-o", str(raw), "--no-postprocessing"]) == 0
    assert "keeping the largest component" not in capsys.readouterr().out
    assert main(["predict", str(run), *args, "-o", str(kept)]) == 0
    assert f"keeping the largest component of label(s) {chosen}" in capsys.readouterr().out
    pieces = {}
    for name, folder in (("raw", raw), ("kept", kept)):
        for f in sorted(folder.glob("*.nii.gz")):
            seg = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))
            for v in chosen:
                if (seg == v).any():
                    pieces.setdefault(name, []).append(cc3d.connected_components(seg == v, return_N=True)[1])
    assert pieces["kept"] and set(pieces["kept"]) == {1}
    assert max(pieces["raw"]) > 1  # the rule changed something
