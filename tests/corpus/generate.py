"""A corpus of bad inputs, each with the command that must refuse it (exit 2) and a fragment of the message.

Every kind copies a small valid base (a phantom dataset, a tiny trained run, perfect predictions) into its own
folder, breaks one thing the way a user would, and returns the CLI arguments, the expected message fragment (naming
the file or case) and the folders whose contents must not change. A few kinds are not refused but warned about, or
cleaned up (``exit_code`` 0, ``gone``). ``python -m tests.corpus.generate OUT`` writes every kind to OUT/<kind>/
with a ``command.json``, for trying them by hand.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess as subprocess_
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

CASE = "phantom000_frame01"  # the case every dataset kind breaks
TEST_CASE = "phantom003_frame01"


@dataclass
class Base:
    """The valid inputs every kind starts from (built once per test session)."""

    dataset: Path  # phantom dataset, nnU-Net raw layout (3 training patients, 1 test patient)
    run: Path  # planned and trained (2d, fold all) on ``dataset``
    predictions: Path  # perfect predictions of imagesTs (copies of labelsTs)


@dataclass
class Case:
    argv: list[str]  # arguments of `autoseg`
    fragment: str  # must appear in stderr
    guarded: list[Path]  # folders whose files must be unchanged afterwards
    exit_code: int = 2  # 0: the input is accepted with a warning (the fragment), or its leftovers cleaned up
    gone: list[Path] = field(default_factory=list)  # files that must not exist afterwards
    subprocess: bool = False  # run as its own process (a failure of its check must not hit the test's); else not
    holder: subprocess_.Popen | None = None  # a process holding a folder's lock while the command runs (release())

    def release(self) -> None:
        """End the lock holder, if any (closing its stdin ends it; the lock file goes with it)."""
        if self.holder is not None:
            self.holder.stdin.close()
            self.holder.wait(timeout=60)


Builder = Callable[[Base, Path], Case]
KINDS: dict[str, tuple[str, Builder]] = {}  # name -> (command, builder)


def kind(name: str, command: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        assert name not in KINDS, name
        KINDS[name] = (command, fn)
        return fn
    return deco


# ---------------------------------------------------------------- helpers
def hold_lock(folder: Path) -> subprocess_.Popen:
    """A process that holds ``folder``'s lock (as a running `autoseg predict` would) until its stdin is closed."""
    code = ("import sys; from autoseg.core.locks import folder_lock\n"
            "with folder_lock(sys.argv[1], clean_temps=False):\n print('held', flush=True); sys.stdin.read()")
    p = subprocess_.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess_.PIPE, stdout=subprocess_.PIPE,
                          text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.stdout.readline().strip() == "held"
    return p


def copy_dataset(base: Base, work: Path) -> Path:
    ds = work / "data"
    shutil.copytree(base.dataset, ds)
    return ds


def img_file(ds: Path, case: str = CASE) -> Path:
    return ds / "imagesTr" / f"{case}_0000.nii.gz"


def lab_file(ds: Path, case: str = CASE) -> Path:
    return ds / "labelsTr" / f"{case}.nii.gz"


def rewrite(path: Path, change: Callable[[sitk.Image], sitk.Image]) -> None:
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path), True)


def with_array(img: sitk.Image, arr: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def cast(path: Path, pixel: int) -> None:
    rewrite(path, lambda im: sitk.Cast(im, pixel))


def truncate_raw(path: Path, drop: int = 300) -> None:
    """A gzip of a NIfTI whose voxel data ends early (as after an interrupted copy before compression)."""
    raw = gzip.open(path).read()
    path.write_bytes(gzip.compress(raw[:-drop]))


def set_raw_pixdim(path: Path, axis: int, value: float) -> None:
    """Write a spacing straight into the NIfTI-1 header (nibabel and SimpleITK would 'fix' zero or NaN)."""
    raw = bytearray(gzip.open(path).read())
    raw[76 + 4 * axis: 80 + 4 * axis] = struct.pack("<f", value)
    path.write_bytes(gzip.compress(bytes(raw)))


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    dj = json.loads(path.read_text())
    path.write_text(json.dumps(change(dj)))


def set_key(key: str, value) -> Callable[[dict], dict]:
    return lambda d: {**d, key: value}


def verify(ds: Path) -> list[str]:
    return ["verify", str(ds)]


def plan(ds: Path, work: Path) -> list[str]:
    return ["plan", str(ds), "--out", str(work / "run"), "-c", "2d", "-j", "1"]


def ds_case(frag: str, change: Callable[[Path], None], command: str = "verify") -> Builder:
    def build(base: Base, work: Path) -> Case:
        ds = copy_dataset(base, work)
        change(ds)
        return Case(verify(ds) if command == "verify" else plan(ds, work), frag, [ds])
    return build


def register_dataset_kinds() -> None:
    c = CASE
    table = {
        "truncated_int16_image": (c, lambda ds: (cast(img_file(ds), sitk.sitkInt16), truncate_raw(img_file(ds)))),
        "truncated_uint8_label": (c, lambda ds: (cast(lab_file(ds), sitk.sitkUInt8), truncate_raw(lab_file(ds)))),
        "truncated_float_image": (c, lambda ds: truncate_raw(img_file(ds))),
        "truncated_gzip_stream": (c, lambda ds: img_file(ds).write_bytes(img_file(ds).read_bytes()[:-200])),
        "png_bytes_in_nifti": (c, lambda ds: img_file(ds).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))),
        "empty_image_file": (c, lambda ds: img_file(ds).write_bytes(b"")),
        "spacing_1e6": (c, lambda ds: rewrite(img_file(ds), lambda im: _spaced(im, 1e6))),
        "spacing_1e30": (c, lambda ds: set_raw_pixdim(img_file(ds), 3, 1e30)),
        "spacing_zero": (c, lambda ds: set_raw_pixdim(img_file(ds), 3, 0.0)),
        "spacing_nan": (c, lambda ds: set_raw_pixdim(img_file(ds), 1, float("nan"))),
        "label_spacing_zero": (c, lambda ds: set_raw_pixdim(lab_file(ds), 2, 0.0)),
        "intensity_1e36": (c, lambda ds: rewrite(img_file(ds), lambda im: im * 0 + 1e36)),
        "nan_in_image": (c, lambda ds: rewrite(img_file(ds), lambda im: _nan(im))),
        "image_2d_in_3d_dataset": (c, lambda ds: rewrite(img_file(ds), lambda im: im[:, :, 3])),
        "image_4d": (c, lambda ds: rewrite(img_file(ds), lambda im: sitk.JoinSeries([im, im]))),
        "undeclared_label_value": (c, lambda ds: rewrite(lab_file(ds), lambda im: _put(im, 7))),
        "non_integer_label": (c, lambda ds: rewrite(lab_file(ds), lambda im: _put(im, 1.5))),
        "label_shape_differs": (c, lambda ds: rewrite(lab_file(ds), lambda im: im[:, :, 1:])),
        "label_spacing_differs": (c, lambda ds: rewrite(lab_file(ds), lambda im: _spaced(im, 9.0))),
        "label_origin_differs": (c, lambda ds: rewrite(lab_file(ds), lambda im: _shifted(im, 30.0))),
        "missing_label_file": (c, lambda ds: lab_file(ds).unlink()),
        "label_without_image": ("phantom999", lambda ds: shutil.copy(lab_file(ds), lab_file(ds, "phantom999"))),
        "dataset_json_not_object": ("dataset.json", lambda ds: edit_json(ds / "dataset.json", lambda d: [d])),
        "dataset_json_not_json": ("dataset.json", lambda ds: (ds / "dataset.json").write_text("{'labels': 1,")),
        "dataset_json_missing": ("dataset.json", lambda ds: (ds / "dataset.json").unlink()),
        "numTraining_text": ("numTraining", lambda ds: edit_json(ds / "dataset.json", set_key("numTraining", "six"))),
        "numTraining_wrong": ("numTraining", lambda ds: edit_json(ds / "dataset.json", set_key("numTraining", 9))),
        "channel_names_list": ("channel_names",
                               lambda ds: edit_json(ds / "dataset.json", set_key("channel_names", ["MRI"]))),
        "labels_without_background": ("background", lambda ds: edit_json(ds / "dataset.json", set_key(
            "labels", {"RV": 1, "MYO": 2, "LV": 3}))),
        "labels_not_integers": ("labels", lambda ds: edit_json(ds / "dataset.json", set_key(
            "labels", {"background": "0", "RV": "1"}))),
        "file_ending_unsupported": ("file_ending", lambda ds: edit_json(ds / "dataset.json", set_key(
            "file_ending", ".dcm"))),
        "cases_csv_not_utf8": ("cases.csv", lambda ds: (ds / "cases.csv").write_bytes(
            "case,patient\nphantom000_frame01,Müller\n".encode("latin-1"))),
        "empty_images_folder": ("imagesTr", lambda ds: [p.unlink() for p in (ds / "imagesTr").iterdir()]),
    }
    plan_kinds = {"truncated_float_image", "spacing_1e6", "intensity_1e36", "image_2d_in_3d_dataset",
                  "cases_csv_not_utf8"}
    for name, (frag, change) in table.items():
        kind(name, "plan" if name in plan_kinds else "verify")(
            ds_case(frag, change, "plan" if name in plan_kinds else "verify"))


def _spaced(im: sitk.Image, z: float) -> sitk.Image:
    im = sitk.Image(im)
    im.SetSpacing(im.GetSpacing()[:2] + (z,))
    return im


def _shifted(im: sitk.Image, mm: float) -> sitk.Image:
    im = sitk.Image(im)
    im.SetOrigin(tuple(o + mm for o in im.GetOrigin()))
    return im


def _nan(im: sitk.Image) -> sitk.Image:
    a = sitk.GetArrayFromImage(im).astype(np.float32)
    a[2, 5, 5] = np.nan
    return with_array(im, a)


def _put(im: sitk.Image, value: float) -> sitk.Image:
    a = sitk.GetArrayFromImage(im).astype(np.float32)
    a[2, 5, 5] = value
    return with_array(im, a)


register_dataset_kinds()


@kind("dataset_folder_missing", "verify")
def _(base: Base, work: Path) -> Case:
    return Case(["verify", str(work / "nowhere")], "nowhere", [])


@kind("plan_out_is_dataset", "plan")
def _(base: Base, work: Path) -> Case:
    ds = copy_dataset(base, work)
    return Case(["plan", str(ds), "--out", str(ds), "-j", "1"], "dataset folder", [ds])


@kind("plan_zero_workers", "plan")
def _(base: Base, work: Path) -> Case:
    ds = copy_dataset(base, work)
    return Case(["plan", str(ds), "--out", str(work / "run"), "-j", "0"], "--num-workers", [ds])


# ---------------------------------------------------------------- preprocess
@kind("preprocess_without_plans", "preprocess")
def _(base: Base, work: Path) -> Case:
    (work / "run").mkdir()
    return Case(["preprocess", str(work / "run")], "plans.json", [])


@kind("preprocess_unknown_configuration", "preprocess")
def _(base: Base, work: Path) -> Case:
    return Case(["preprocess", str(base.run), "-c", "3d_nothing"], "3d_nothing", [base.run])


@kind("preprocess_input_truncated_since_plan", "preprocess")
def _(base: Base, work: Path) -> Case:
    ds = copy_dataset(base, work)
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed", "2d"))
    edit_json(run / "plans.json", set_key("dataset_dir", str(ds)))
    truncate_raw(img_file(ds))
    return Case(["preprocess", str(run), "-c", "2d"], CASE, [ds])


# The locks below are held by a live process (hold_lock), which the refusal must name.
@kind("preprocess_locked_by_live_process", "preprocess")
def _(base: Base, work: Path) -> Case:
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed", "2d"))
    (run / "preprocessed" / "2d").mkdir(parents=True)
    holder = hold_lock(run / "preprocessed" / "2d")
    return Case(["preprocess", str(run), "-c", "2d"], f"pid {holder.pid}", [run], holder=holder)


# ---------------------------------------------------------------- predict
def predict(base: Base, inp: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", str(base.run), "-i", str(inp), "-o", str(out), "-c", "2d", *extra]


def test_images(base: Base, work: Path) -> Path:
    d = work / "images"
    shutil.copytree(base.dataset / "imagesTs", d)
    return d


@kind("predict_output_replaces_input", "predict")
def _(base: Base, work: Path) -> Case:
    d = work / "scans"
    d.mkdir()
    scan = d / "scan.nii.gz"
    shutil.copy(base.dataset / "imagesTs" / f"{TEST_CASE}_0000.nii.gz", scan)
    return Case(predict(base, scan, d), "would replace the input", [d, base.run])


@kind("predict_step_zero", "predict")
def _(base: Base, work: Path) -> Case:
    d = test_images(base, work)
    return Case(predict(base, d, work / "out", "--step", "0"), "--step", [d])


@kind("predict_step_above_one", "predict")
def _(base: Base, work: Path) -> Case:
    d = test_images(base, work)
    return Case(predict(base, d, work / "out", "--step", "1.5"), "--step", [d])


def _broken_test_input(change: Callable[[Path], None], frag: str) -> Builder:
    def build(base: Base, work: Path) -> Case:
        d = test_images(base, work)
        change(d / f"{TEST_CASE}_0000.nii.gz")
        return Case(predict(base, d, work / "out"), frag, [d, base.run])
    return build


for _name, _change in {"truncated": truncate_raw,
                       "png_bytes": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300)),
                       "spacing_nan": lambda p: set_raw_pixdim(p, 1, float("nan")),
                       "intensity_1e36": lambda p: rewrite(p, lambda im: im * 0 + 1e36),
                       "nan_voxel": lambda p: rewrite(p, _nan)}.items():
    kind(f"predict_input_{_name}", "predict")(_broken_test_input(_change, TEST_CASE))


@kind("predict_2d_image_with_3d_configuration", "predict")
def _(base: Base, work: Path) -> Case:
    d = test_images(base, work)
    rewrite(d / f"{TEST_CASE}_0000.nii.gz", lambda im: im[:, :, 3])
    return Case(predict(base, d, work / "out", "-c", "3d_fullres"), "2D image", [d, base.run])


@kind("predict_input_missing", "predict")
def _(base: Base, work: Path) -> Case:
    return Case(predict(base, work / "nothing_here", work / "out"), "nothing_here", [])


@kind("predict_unknown_configuration", "predict")
def _(base: Base, work: Path) -> Case:
    d = test_images(base, work)
    argv = predict(base, d, work / "out")
    argv[argv.index("2d")] = "3d_nothing"
    return Case(argv, "3d_nothing", [d])


@kind("predict_output_locked", "predict")
def _(base: Base, work: Path) -> Case:
    d = test_images(base, work)
    out = work / "out"
    out.mkdir()
    (out / "earlier.nii.gz").write_bytes(b"an earlier result")
    holder = hold_lock(out)
    return Case(predict(base, d, out), f"pid {holder.pid}", [d, out], holder=holder)


def _copied_run(base: Base, work: Path, change: Callable[[dict], None]) -> Path:
    import torch

    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed"))
    ck_path = run / "2d" / "fold_all" / "checkpoint_final.pt"
    ck = torch.load(ck_path, weights_only=True)
    change(ck)
    torch.save(ck, ck_path)
    return run


@kind("predict_checkpoint_unknown_arch_key", "predict")
def _(base: Base, work: Path) -> Case:
    run = _copied_run(base, work, lambda ck: ck["architecture"]["arch_kwargs"].update(warp_factor=9))
    d = test_images(base, work)
    return Case(["predict", str(run), "-i", str(d), "-o", str(work / "out"), "-c", "2d"], "network", [d])


@kind("predict_negative_patch_size_in_plans", "predict")
def _(base: Base, work: Path) -> Case:
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed"))
    plans = json.loads((run / "plans.json").read_text())
    plans["configurations"]["2d"]["patch_size"] = [-32, 32]
    (run / "plans.json").write_text(json.dumps(plans))
    d = test_images(base, work)
    return Case(["predict", str(run), "-i", str(d), "-o", str(work / "out"), "-c", "2d"], "patch_size", [d, run])


@kind("predict_checkpoint_corrupt", "predict")
def _(base: Base, work: Path) -> Case:
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed"))
    ck = run / "2d" / "fold_all" / "checkpoint_final.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    d = test_images(base, work)
    return Case(["predict", str(run), "-i", str(d), "-o", str(work / "out"), "-c", "2d"], "checkpoint_final.pt",
                [d])


# ---------------------------------------------------------------- evaluate
def evaluate(preds: Path, labels: Path, *extra: str) -> list[str]:
    return ["evaluate", str(preds), str(labels), *extra]


def eval_inputs(base: Base, work: Path) -> tuple[Path, Path]:
    preds = work / "preds"
    shutil.copytree(base.predictions, preds)
    ds = work / "data"
    ds.mkdir()
    shutil.copytree(base.dataset / "labelsTs", ds / "labelsTs")
    shutil.copy(base.dataset / "dataset.json", ds / "dataset.json")
    shutil.copy(base.dataset / "cases.csv", ds / "cases.csv")
    return preds, ds


def _broken_prediction(change: Callable[[sitk.Image], sitk.Image], frag: str, on: str = "pred") -> Builder:
    def build(base: Base, work: Path) -> Case:
        preds, ds = eval_inputs(base, work)
        target = preds if on == "pred" else ds / "labelsTs"
        rewrite(target / f"{TEST_CASE}.nii.gz", change)
        return Case(evaluate(preds, ds / "labelsTs"), frag, [preds, ds])
    return build


for _name, (_change, _frag, _on) in {
    "origin_shifted_30mm": (lambda im: _shifted(im, 30.0), "origin", "pred"),
    "spacing_differs": (lambda im: _spaced(im, 3.0), "spacing", "pred"),
    "shape_differs": (lambda im: im[:, :, 1:], "shape", "pred"),
    "direction_differs": (lambda im: _flipped(im), "direction", "pred"),
    "undeclared_label_in_prediction": (lambda im: _put(im, 9), "[9]", "pred"),
    "undeclared_label_in_reference": (lambda im: _put(im, 5), "[5]", "ref"),
}.items():
    kind(f"evaluate_{_name}", "evaluate")(_broken_prediction(_change, _frag, _on))


def _flipped(im: sitk.Image) -> sitk.Image:
    im = sitk.Image(im)
    d = list(im.GetDirection())
    im.SetDirection(tuple(-v for v in d[:3]) + tuple(d[3:]))
    return im


@kind("evaluate_prediction_truncated", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    truncate_raw(preds / f"{TEST_CASE}.nii.gz")
    return Case(evaluate(preds, ds / "labelsTs"), TEST_CASE, [preds, ds])


@kind("evaluate_cases_csv_not_utf8", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    (ds / "cases.csv").write_bytes("case,patient\nphantom003_frame01,Müller\n".encode("latin-1"))
    return Case(evaluate(preds, ds / "labelsTs"), "cases.csv", [preds, ds])


@kind("evaluate_dataset_json_not_object", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    edit_json(ds / "dataset.json", lambda d: [d])
    return Case(evaluate(preds, ds / "labelsTs"), "dataset.json", [preds, ds])


@kind("evaluate_reference_missing", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    (ds / "labelsTs" / f"{TEST_CASE}.nii.gz").unlink()
    return Case(evaluate(preds, ds / "labelsTs"), TEST_CASE, [preds, ds])


@kind("evaluate_summary_replaces_input", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    dj = preds / "summary.json"  # the dataset description saved where the summary would go
    shutil.copy(ds / "dataset.json", dj)
    return Case(evaluate(preds, ds / "labelsTs", "--dataset-json", str(dj)), "would replace the input",
                [preds, ds])


@kind("evaluate_output_locked", "evaluate")
def _(base: Base, work: Path) -> Case:
    preds, ds = eval_inputs(base, work)
    holder = hold_lock(preds)
    return Case(evaluate(preds, ds / "labelsTs"), f"pid {holder.pid}", [preds, ds], holder=holder)


# ---------------------------------------------------------------- the last ones found (issue 23)
@kind("train_patch_size_100000", "train")
def _(base: Base, work: Path) -> Case:
    """Once trained until a data worker died allocating 38 GB; predict refused the same plans up front."""
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("2d"))
    edit_json(run / "plans.json", lambda p: (p["configurations"]["2d"].update(patch_size=[100000, 100000]), p)[1])
    return Case(["train", str(run), "-c", "2d", "-f", "all", "--epochs", "1", "--iters-per-epoch", "1",
                 "--num-workers", "1"], "at most 4096", [run])


@kind("predict_input_spacing_500mm", "predict")
def _(base: Base, work: Path) -> Case:
    """A 256x256 slice at 500 mm, resampled to the phantom's 1.8 mm: hundreds of GB; refused before allocating."""
    d = test_images(base, work)
    rewrite(d / f"{TEST_CASE}_0000.nii.gz", lambda im: _coarse_and_wide(im, 500.0, 8))
    return Case(predict(base, d, work / "out"), f"case {TEST_CASE}: predicting it with 2d needs at least",
                [d, base.run], subprocess=True)  # without the check it would allocate: not in the test's process


def _coarse_and_wide(im: sitk.Image, mm: float, times: int) -> sitk.Image:
    a = sitk.GetArrayFromImage(im)
    out = sitk.GetImageFromArray(np.repeat(np.repeat(a, times, 1), times, 2))
    out.SetSpacing((mm, mm, im.GetSpacing()[2]))
    return out


@kind("predict_extra_channel_file", "predict")
def _(base: Base, work: Path) -> Case:
    """case_0001 beside case_0000 for a 1-channel model was ignored without a word."""
    d = test_images(base, work)
    shutil.copy(d / f"{TEST_CASE}_0000.nii.gz", d / f"{TEST_CASE}_0001.nii.gz")
    return Case(predict(base, d, work / "out"), f"case {TEST_CASE}: image files _0000 to _0001, but the model "
                "declares 1 channel(s)", [d, base.run])


@kind("predict_input_spacing_0.001mm", "predict")
def _(base: Base, work: Path) -> Case:
    """Segmented silently; now predicted with a warning naming the case and the factor."""
    d = test_images(base, work)
    rewrite(d / f"{TEST_CASE}_0000.nii.gz", lambda im: _spacing_in_plane(im, 0.001))
    return Case(predict(base, d, work / "out"), f"warning: case {TEST_CASE}: spacing (", [d, base.run], exit_code=0)


def _spacing_in_plane(im: sitk.Image, mm: float) -> sitk.Image:
    im = sitk.Image(im)
    im.SetSpacing((mm, mm) + im.GetSpacing()[2:])
    return im


@kind("preprocess_channel_count_mismatch", "preprocess")
def _(base: Base, work: Path) -> Case:
    """dataset.json gained a channel after planning: the error named no case."""
    ds = copy_dataset(base, work)
    for f in sorted((ds / "imagesTr").glob("*_0000.nii.gz")):
        shutil.copy(f, f.with_name(f.name.replace("_0000", "_0001")))
    edit_json(ds / "dataset.json", set_key("channel_names", {"0": "cineMRI", "1": "second"}))
    run = work / "run"
    shutil.copytree(base.run, run, ignore=shutil.ignore_patterns("preprocessed", "2d"))
    edit_json(run / "plans.json", set_key("dataset_dir", str(ds)))
    return Case(["preprocess", str(run), "-c", "2d", "-j", "1"], f"case {CASE}: the image has 2 channel(s)", [ds])


@kind("evaluate_report_stale_temp", "evaluate")
def _(base: Base, work: Path) -> Case:
    """A killed `evaluate --report` left a 0-byte temporary file in report/ that the rerun kept."""
    preds, ds = eval_inputs(base, work)
    stale = preds / "report" / ".report.html.autoseg-tmp-0badf00d.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    return Case(evaluate(preds, ds / "labelsTs", "--report"), "report written to", [ds], exit_code=0, gone=[stale])


def build_base(root: Path) -> Base:
    """Phantom dataset, a 2d run trained for two iterations, and perfect predictions of the test cases."""
    from autoseg.cli import main
    from autoseg.datasets.phantom import make_phantom_dataset

    ds = make_phantom_dataset(root / "data", n_train_patients=3, n_test_patients=1, seed=1, size=32)
    run = root / "run"
    assert main(["plan", str(ds), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    assert main(["train", str(run), "-c", "2d", "-f", "all", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--no-validation"]) == 0
    preds = root / "predictions"
    shutil.copytree(ds / "labelsTs", preds)
    return Base(ds, run, preds)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    base = build_base(out / "_base")
    for name, (command, build) in KINDS.items():
        (out / name).mkdir(parents=True)
        c = build(base, out / name)
        (out / name / "command.json").write_text(json.dumps({"command": command, "argv": c.argv,
                                                             "fragment": c.fragment, "exit_code": c.exit_code},
                                                            indent=1))
        c.release()  # a lock held by a process cannot be written to a folder: those kinds are not locked by hand
    print(f"{len(KINDS)} kinds written to {out}")
