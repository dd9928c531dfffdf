"""Model zips (export, predict from the zip, refusal of unsafe archives) and the Python Predictor."""
import importlib.util
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.core.errors import AutosegError
from autoseg.sharing.model_zip import extract_model, sha256_of

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "sharing.md"  # holds the Python API example


@pytest.fixture(scope="module")
def trained_run(tiny_phantom, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("share") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-j", "1", "-c", "2d"]) == 0
    for fold in ("0", "1"):
        assert main(["train", str(run), "-c", "2d", "-f", fold, "--epochs", "1", "--iters-per-epoch", "2",
                     "--batch-size", "2", "--num-workers", "0", "--no-validation", "--seed", fold]) == 0
    return run


@pytest.fixture(scope="module")
def model_zip(trained_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zip") / "model.zip"
    assert main(["export", str(trained_run), "-o", str(out)]) == 0
    return out


def _labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


@pytest.mark.slow
def test_export_contents_and_manifest(model_zip, trained_run):
    with zipfile.ZipFile(model_zip) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        dataset = json.loads(z.read("dataset.json"))
    assert {"plans.json", "fingerprint.json", "dataset.json", "manifest.json", "2d/fold_0/checkpoint_final.pt",
            "2d/fold_1/checkpoint_final.pt"} <= names
    assert not any("preprocessed" in n or n.endswith((".npy", ".nii.gz")) or "splits" in n for n in names)
    assert not any("checkpoint_latest" in n or "checkpoint_best" in n for n in names)
    assert manifest["configurations"] == {"2d": ["0", "1"]}
    assert manifest["torch_version"] and manifest["autoseg_version"]
    assert manifest["files"]["plans.json"] == sha256_of(trained_run / "plans.json")
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert dataset["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


@pytest.mark.slow
def test_export_one_fold_and_bad_fold(trained_run, tmp_path):
    out = tmp_path / "f1.zip"
    assert main(["export", str(trained_run), "-o", str(out), "-f", "1"]) == 0
    with zipfile.ZipFile(out) as z:
        assert not any("fold_0" in n for n in z.namelist())
    assert main(["export", str(trained_run), "-o", str(tmp_path / "x.zip"), "-f", "3"]) == 2
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.slow
def test_predict_from_zip_equals_run(trained_run, model_zip, tiny_phantom, tmp_path):
    images = tiny_phantom / "imagesTs"
    assert main(["predict", str(trained_run), "-i", str(images), "-o", str(tmp_path / "run"), "--no-tta"]) == 0
    assert main(["predict", str(model_zip), "-i", str(images), "-o", str(tmp_path / "zip"), "--no-tta"]) == 0
    a, b = _labels(tmp_path / "run"), _labels(tmp_path / "zip")
    assert len(a) == 2 and a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    # the zip is left as it was, and nothing was unpacked beside it
    assert sorted(p.name for p in model_zip.parent.iterdir()) == ["model.zip"]


def _zip_with(tmp_path: Path, model_zip: Path, name: str, data: bytes = b"x", symlink: bool = False,
              listed: bool = True) -> Path:
    """A copy of a good model zip with one extra member (listed in the manifest when ``listed``)."""
    out = tmp_path / "evil.zip"
    with zipfile.ZipFile(model_zip) as src, zipfile.ZipFile(out, "w") as dst:
        manifest = json.loads(src.read("manifest.json"))
        if listed:
            manifest["files"][name] = "0" * 64
        for info in src.infolist():
            if info.filename != "manifest.json":
                dst.writestr(info, src.read(info))
        dst.writestr("manifest.json", json.dumps(manifest))
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        dst.writestr(info, data)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name,symlink,needle", [
    ("../escaped.txt", False, "'..'"),
    ("2d/../../escaped.txt", False, "'..'"),
    ("/tmp/escaped_abs.txt", False, "absolute path"),
    ("C:/escaped.txt", False, "absolute path"),
    ("..\\escaped.txt", False, "backslash"),
    ("2d/link", True, "symbolic link"),
])
def test_malicious_zip_is_refused(model_zip, tmp_path, name, symlink, needle):
    evil = _zip_with(tmp_path, model_zip, name, b"/etc/passwd" if symlink else b"pwned", symlink)
    dest = tmp_path / "unpacked"
    with pytest.raises(AutosegError, match=needle):
        extract_model(evil, dest)
    assert not dest.exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped_abs.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.zip"]  # no temporary folder left behind
    # and through the CLI: exit 2 with a one-line message
    assert main(["predict", str(evil), "-i", str(tmp_path), "-o", str(tmp_path / "p")]) == 2


@pytest.mark.slow
def test_altered_or_unlisted_member_is_refused(model_zip, tmp_path):
    with pytest.raises(AutosegError, match="not listed"):
        extract_model(_zip_with(tmp_path, model_zip, "extra.bin", listed=False), tmp_path / "a")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(model_zip) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data.replace(b'"RV"', b'"XX"') if info.filename == "plans.json" else data)
    with pytest.raises(AutosegError, match="SHA-256"):
        extract_model(tampered, tmp_path / "b")
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    with pytest.raises(AutosegError, match="not a readable zip"):
        extract_model(not_zip, tmp_path / "c")


@pytest.mark.slow
def test_python_predictor_matches_cli(trained_run, model_zip, tiny_phantom, tmp_path):
    from autoseg import Predictor

    images = sorted((tiny_phantom / "imagesTs").glob("*_0000.nii.gz"))
    assert main(["predict", str(model_zip), "-i", str(images[0].parent), "-o", str(tmp_path / "cli"),
                 "-f", "0"]) == 0
    cli = _labels(tmp_path / "cli")
    for source in (trained_run, model_zip):
        pred = Predictor.from_run(source, folds=[0], device="cpu")
        for f in images:
            img = sitk.ReadImage(str(f))
            seg = pred.predict_image(img)
            ref = cli[f.name.replace("_0000", "")]
            assert np.array_equal(sitk.GetArrayFromImage(seg), ref)
            assert seg.GetSize() == img.GetSize() and seg.GetOrigin() == img.GetOrigin()
            assert seg.GetDirection() == img.GetDirection() and seg.GetSpacing() == img.GetSpacing()
            labels, probs = pred.predict(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(),
                                         img.GetDirection(), return_probabilities=True)
            assert np.array_equal(labels, ref)
            assert probs.shape == (4,) + ref.shape and np.allclose(probs.sum(0), 1, atol=1e-4)
            assert np.array_equal(np.argmax(probs, 0)[ref > 0], ref[ref > 0])  # no postprocessing planned here


@pytest.mark.slow
def test_python_predictor_bad_inputs(model_zip):
    from autoseg import Predictor

    pred = Predictor.from_run(model_zip, folds=[1], device="cpu")
    with pytest.raises(AutosegError, match="spacing"):
        pred.predict(np.zeros((4, 32, 32), np.float32), (1.0, 1.0))
    with pytest.raises(AutosegError, match="NaN"):
        pred.predict(np.full((2, 16, 16), np.nan, np.float32), (1.0, 1.0, 5.0))
    with pytest.raises(AutosegError, match="neither a run folder"):
        Predictor.from_run(model_zip.parent / "missing.zip")
    # a 2D image works: a single slice with in-plane spacing
    seg = pred.predict(np.random.default_rng(0).random((40, 36)).astype(np.float32), (1.8, 1.8))
    assert seg.shape == (40, 36)


def _readme_example() -> str:
    text = API_DOC.read_text()
    m = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/sharing.md lost its Python API example"
    return m.group(1)


@pytest.mark.slow
def test_readme_python_example_runs(model_zip, tiny_phantom, tmp_path):
    image = sorted((tiny_phantom / "imagesTs").glob("*_0000.nii.gz"))[0]
    shutil.copy(model_zip, tmp_path / "model.zip")
    shutil.copy(image, tmp_path / "patient001_frame01_0000.nii.gz")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(_readme_example(), "docs/sharing.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    out = sitk.ReadImage(str(tmp_path / "patient001_frame01.nii.gz"))
    assert out.GetSize() == sitk.ReadImage(str(image)).GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(out), scope["labels"])


@pytest.mark.slow
@pytest.mark.skipif(not (importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime")),
                    reason="the optional ONNX export and backend need the onnx and onnxruntime packages")
def test_onnx_export_matches_torch(trained_run, tiny_phantom, tmp_path):
    """`export --onnx`: onnxruntime's probabilities match torch's within 1e-4, on the same tiles and end to end."""
    import onnxruntime as ort
    import torch

    from autoseg import Predictor
    from autoseg.inference.onnx_backend import OnnxNetwork

    out = tmp_path / "onnx.zip"
    assert main(["export", str(trained_run), "-o", str(out), "-f", "0", "--onnx"]) == 0
    with zipfile.ZipFile(out) as z:
        assert "2d/fold_0/network.onnx" in z.namelist() and json.loads(z.read("manifest.json"))["onnx"] is True
    torch_pred = Predictor.from_run(out, device="cpu")
    onnx_pred = Predictor.from_run(out, backend="onnxruntime")
    assert isinstance(onnx_pred.networks[0], OnnxNetwork) and ort.get_device()
    patch = torch_pred.plans.configuration("2d").patch_size
    tiles = torch.randn((3, 1, *patch))  # the same tiles through both networks
    with torch.no_grad():
        a = torch.softmax(torch_pred.networks[0](tiles), 1)
    b = torch.softmax(onnx_pred.networks[0](tiles), 1)
    assert float((a - b).abs().max()) < 1e-4
    img = sitk.ReadImage(str(sorted((tiny_phantom / "imagesTs").glob("*.nii.gz"))[0]))
    args = (sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    la, pa = torch_pred.predict(*args, return_probabilities=True)
    lb, pb = onnx_pred.predict(*args, return_probabilities=True)
    assert np.abs(pa - pb).max() < 1e-4 and (la == lb).mean() > 0.999
    with pytest.raises(AutosegError, match="export the model .* --onnx"):
        Predictor.from_run(trained_run, folds=[0], backend="onnxruntime")


@pytest.mark.slow
def test_zip_carries_the_cross_validation_postprocessing(cv_postprocessed_2d, doubled_heart, tmp_path):
    """Exported with its postprocessing.json, the model predicts from the zip what the run predicts: the largest
    LV component only (without the file, fold 'all' would keep every label's largest component)."""
    from .test_cv_postprocessing import assert_cv_postprocessing_applied, predict_doubled

    out = tmp_path / "model.zip"
    assert main(["export", str(cv_postprocessed_2d), "-o", str(out)]) == 0
    with zipfile.ZipFile(out) as z:
        assert json.loads(z.read("2d/postprocessing.json"))["lcc_labels"] == [3]
    from_zip = predict_doubled(out, doubled_heart, tmp_path / "zip")
    from_run = predict_doubled(cv_postprocessed_2d, doubled_heart, tmp_path / "run")
    assert np.array_equal(from_zip, from_run)
    raw = predict_doubled(out, doubled_heart, tmp_path / "raw", "--no-postprocessing")
    assert_cv_postprocessing_applied(raw, from_zip)
