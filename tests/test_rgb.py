"""nnU-Net's colour convention: one RGB(A) ``<case>_0000.png`` per case carries every declared channel.

A synthetic RGB PNG dataset goes through verify, plan, preprocessing, training, prediction and evaluation; mixed
layouts and files whose channel count does not match channel_names are refused naming the case; TIFF is read like
PNG; the real DRIVE dataset (when present) is verified and fingerprinted as three channels.
"""
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg import api
from autoseg.cli import main
from autoseg.core.errors import AutosegError
from autoseg.inference.predictor import discover_inputs
from autoseg.io.dataset import load_dataset, verify_case, verify_dataset
from autoseg.io.images import read_case_images

from .conftest import SHARED_DATA

DRIVE = SHARED_DATA / "Dataset033_DRIVE"
# foreground (disk) and background colour of the synthetic cases: distinct per channel, so a swapped or dropped
# channel shows in the data and in the fingerprint
FG, BG = (200, 120, 40), (60, 90, 30)


def _rgb_case(rng, shape=(40, 48), alpha: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(Y, X, 3 or 4) uint8 colour image and its (Y, X) label map: a disk of label 1."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx, r = rng.integers(14, 26), rng.integers(14, 34), rng.integers(6, 10)
    lab = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
    img = np.where(lab[..., None] > 0, np.array(FG), np.array(BG)).astype(np.int16)
    img = np.clip(img + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)
    if alpha:
        img = np.concatenate([img, np.full(shape + (1,), 255, np.uint8)], -1)
    return img, lab


def _write_rgb(arr: np.ndarray, path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(path))


def make_rgb_dataset(root, n_train=6, n_test=2, ending=".png", alpha=False, seed=0):
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True)
    for split, n in (("Tr", n_train), ("Ts", n_test)):
        for i in range(n):
            img, lab = _rgb_case(rng, alpha=alpha)
            _write_rgb(img, root / f"images{split}" / f"c{split}{i:02d}_0000{ending}")
            sitk.WriteImage(sitk.GetImageFromArray(lab), str(root / f"labels{split}" / f"c{split}{i:02d}{ending}"))
    names = ["R", "G", "B"] + (["A"] if alpha else [])
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {str(i): n for i, n in enumerate(names)}, "labels": {"background": 0, "disk": 1},
        "numTraining": n_train, "file_ending": ending}))
    return root


@pytest.fixture(scope="module")
def rgb_dataset(tmp_path_factory):
    return make_rgb_dataset(tmp_path_factory.mktemp("rgb") / "Dataset901_RGB")


def test_one_rgb_file_is_three_channels(rgb_dataset):
    ds = verify_dataset(rgb_dataset)
    assert ds.num_channels == 3 and ds.num_files == 1
    case = ds.cases[0]
    assert [p.name for p in ds.image_files(case)] == [f"{case}_0000.png"]
    data, seg, geom = verify_case(ds, case)
    assert data.shape == (3, 1, 40, 48) and geom.dimension == 2 and geom.spacing == (999.0, 1.0, 1.0)
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(ds.image_files(case)[0])))
    assert np.array_equal(data[:, 0], np.moveaxis(rgb, -1, 0))  # R, G, B in file order
    fg = seg[0] > 0
    assert [round(float(data[c, 0][fg].mean())) for c in range(3)] == pytest.approx(FG, abs=2)


@pytest.mark.slow
def test_rgb_end_to_end(rgb_dataset, tmp_path):
    """verify -> plan -> preprocess -> train (tiny network) -> predict (PNG labels on the input's grid) ->
    evaluate, and the Python Predictor on the same RGB file."""
    run = tmp_path / "run"
    assert main(["verify", str(rgb_dataset)]) == 0
    assert main(["plan", str(rgb_dataset), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    fp = json.loads((run / "fingerprint.json").read_text())
    props = fp["foreground_intensity_properties_per_channel"]
    assert [round(props[str(c)]["mean"]) for c in range(3)] == pytest.approx(FG, abs=2)
    plans = json.loads((run / "plans.json").read_text())
    assert plans["num_input_channels"] == 3
    cfg = plans["configurations"]["2d"]
    assert len(cfg["normalization_schemes"]) == 3
    assert np.load(run / "preprocessed" / "2d" / "cTr00.npy", mmap_mode="r").shape[:2] == (3, 1)
    kw = cfg["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [4 * 2 ** min(i, 2) for i in range(len(kw["features_per_stage"]))]
    (run / "plans.json").write_text(json.dumps(plans))
    assert main(["train", str(run), "-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2",
                 "--val-iters", "1", "--batch-size", "2", "--num-workers", "0", "--device", "cpu"]) == 0
    assert (run / "2d" / "fold_0" / "validation" / "summary.json").is_file()
    out = tmp_path / "pred"
    assert main(["predict", str(run), "-i", str(rgb_dataset / "imagesTs"), "-o", str(out), "-f", "0",
                 "--device", "cpu"]) == 0
    for p in sorted((rgb_dataset / "imagesTs").glob("*.png")):
        pred = sitk.ReadImage(str(out / p.name.replace("_0000", "")))
        src = sitk.ReadImage(str(p))
        assert pred.GetDimension() == 2 and pred.GetNumberOfComponentsPerPixel() == 1
        assert pred.GetSize() == src.GetSize() and pred.GetPixelID() == sitk.sitkUInt8
        assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1}
    assert main(["evaluate", str(out), str(rgb_dataset / "labelsTs"), "--dataset-json",
                 str(rgb_dataset / "dataset.json")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["per_case"]) == 2
    # the Python Predictor takes the RGB image as read from the file, and agrees with `autoseg predict`
    from autoseg import Predictor

    pr = Predictor.from_run(run, folds=[0], device="cpu")
    first = sorted((rgb_dataset / "imagesTs").glob("*.png"))[0]
    seg = pr.predict_image(sitk.ReadImage(str(first)))
    cli = sitk.ReadImage(str(out / first.name.replace("_0000", "")))
    assert np.array_equal(sitk.GetArrayFromImage(seg), sitk.GetArrayFromImage(cli))
    # a single RGB file given to predict (no _0000 siblings needed) is one case of three channels
    single = tmp_path / "one.png"
    shutil.copy(first, single)
    assert discover_inputs(single, ".png", 3, ["R", "G", "B"]) == [("one", [single])]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _split_case(root, case):
    """Rewrite one case as three one-channel files (the other convention)."""
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "imagesTr" / f"{case}_0000.png")))
    for c in range(3):
        sitk.WriteImage(sitk.GetImageFromArray(rgb[..., c]), str(root / "imagesTr" / f"{case}_{c:04d}.png"))


def test_mixed_layouts_are_refused(rgb_dataset, tmp_path):
    d = _copy(rgb_dataset, tmp_path / "mixed")
    _split_case(d, "cTr03")
    with pytest.raises(AutosegError, match=r"case cTr03: 3 image file\(s\), one channel each, but 5 case\(s\) "
                                           r"such as cTr00 have 1 image file\(s\) holding 3 channels "
                                           r"\(cTr00_0000.png\); write every case the same way"):
        load_dataset(d)
    # the same mix in a folder given to predict
    with pytest.raises(AutosegError, match=r"case cTr03: 3 image file\(s\), one channel each"):
        discover_inputs(d / "imagesTr", ".png", 3, ["R", "G", "B"])
    # every case split is the ordinary layout
    d2 = _copy(rgb_dataset, tmp_path / "split")
    for i in range(6):
        _split_case(d2, f"cTr{i:02d}")
    ds = verify_dataset(d2)
    assert ds.num_files == 3
    data, _, _ = verify_case(ds, "cTr00")
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(rgb_dataset / "imagesTr" / "cTr00_0000.png")))
    assert np.array_equal(data[:, 0], np.moveaxis(rgb, -1, 0))


def test_channel_count_mismatch_is_refused(rgb_dataset, tmp_path):
    # an RGBA file where R, G, B are declared: nnU-Net counts alpha as a channel, so 4 != 3
    d = _copy(rgb_dataset, tmp_path / "rgba")
    img, _ = _rgb_case(np.random.default_rng(5), alpha=True)
    _write_rgb(img, d / "imagesTr" / "cTr02_0000.png")
    with pytest.raises(AutosegError, match=r"case cTr02: its image files hold 4 channels \(cTr02_0000.png: "
                                           r"4 channels, RGBA\), but dataset.json declares 3"):
        load_dataset(d)
    # a grayscale file where three channels are declared
    d = _copy(rgb_dataset, tmp_path / "gray")
    sitk.WriteImage(sitk.GetImageFromArray(img[..., 0]), str(d / "imagesTr" / "cTr04_0000.png"))
    with pytest.raises(AutosegError, match=r"case cTr04: missing channel 1 \(cTr04_0001.png\)"):
        load_dataset(d)
    # three RGB files where three channels are declared: the structure looks split, the contents say 9 channels
    d = _copy(rgb_dataset, tmp_path / "three_rgb")
    for i in range(6):
        for c in (1, 2):
            shutil.copy(d / "imagesTr" / f"cTr{i:02d}_0000.png", d / "imagesTr" / f"cTr{i:02d}_{c:04d}.png")
    with pytest.raises(AutosegError, match=r"case cTr00: the image files hold 9 channel\(s\)"):
        verify_dataset(d)
    # more files than declared channels
    d = _copy(rgb_dataset, tmp_path / "extra")
    shutil.copy(d / "imagesTr" / "cTr01_0000.png", d / "imagesTr" / "cTr01_0003.png")
    with pytest.raises(AutosegError, match=r"case cTr01: image files _0000 to _0003, but dataset.json declares 3"):
        load_dataset(d)


def test_rgba_with_four_declared_channels_keeps_alpha(tmp_path):
    d = make_rgb_dataset(tmp_path / "Dataset902_RGBA", n_train=2, n_test=0, alpha=True)
    ds = verify_dataset(d)
    data, _, _ = verify_case(ds, ds.cases[0])
    assert data.shape[0] == 4 and np.all(data[3] == 255)


def test_rgb_tiff_reads_like_png(tmp_path):
    d = make_rgb_dataset(tmp_path / "Dataset903_TIF", n_train=2, n_test=0, ending=".tif")
    assert sitk.ReadImage(str(d / "imagesTr" / "cTr00_0000.tif")).GetNumberOfComponentsPerPixel() == 3
    ds = verify_dataset(d)
    data, seg, geom = verify_case(ds, "cTr00")
    assert data.shape == (3, 1, 40, 48) and geom.spacing == (999.0, 1.0, 1.0) and geom.is_png
    assert [round(float(data[c, 0][seg[0] > 0].mean())) for c in range(3)] == pytest.approx(FG, abs=2)
    # a multi-page TIFF is a 3D stack without a reliable spacing: refused
    stack = sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8))
    sitk.WriteImage(stack, str(tmp_path / "stack.tif"))
    with pytest.raises(AutosegError, match="3D .tif stack"):
        read_case_images([tmp_path / "stack.tif"])


def test_drive_real_rgb(tmp_path):
    """The real DRIVE fundus photographs (nnU-Net's RGB layout): verified, and fingerprinted as three channels whose
    vessel intensity statistics are those of the files' R, G and B."""
    if not (DRIVE / "dataset.json").is_file():
        pytest.skip(f"real-data test: {DRIVE} is absent (the shared DRIVE dataset lives beside the project root)")
    ds = load_dataset(DRIVE)
    assert ds.num_channels == 3 and ds.num_files == 1 and len(ds.cases) == 20
    plans = api.plan(DRIVE, tmp_path / "run", preprocess_after=False, configurations=["2d"])
    assert plans.num_input_channels == 3 and list(plans.configurations) == ["2d"]
    fp = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    props = fp["foreground_intensity_properties_per_channel"]
    means = np.zeros(3)
    for case in ds.cases:  # every case weighs the same in the fingerprint
        rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(ds.image_files(case)[0])))
        vessel = sitk.GetArrayFromImage(sitk.ReadImage(str(ds.label_file(case)))) > 0
        means += rgb[vessel].mean(0) / len(ds.cases)
    assert [props[str(c)]["mean"] for c in range(3)] == pytest.approx(list(means), abs=1.0)
    assert props["0"]["mean"] > props["1"]["mean"] > props["2"]["mean"]  # a fundus is red
    assert props["0"]["max"] <= 255 and props["2"]["min"] >= 0
