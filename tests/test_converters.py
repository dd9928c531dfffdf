"""`autoseg convert acdc|camus|msd` on small synthetic replicas of each public layout."""
import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main

ROT = (0.8, -0.6, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, 1.0)


def _img(arr: np.ndarray, spacing, origin, direction) -> sitk.Image:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    im.SetDirection(direction)
    return im


def _volume(rng, shape, labels: bool) -> np.ndarray:
    if labels:
        lab = np.zeros(shape, np.uint8)
        lab[..., 4:10, 4:10] = 1
        lab[..., 12:16, 5:9] = 2
        lab[..., 6:9, 12:18] = 3
        return lab
    return rng.uniform(1, 100, shape).astype(np.float32)


def _snapshot(root: Path) -> dict:
    """Every file under root with its bytes' hash and mtime (to show the raw folder is never modified)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_acdc(root: Path) -> Path:
    rng = np.random.default_rng(0)
    patients = [("training", 1, "DCM", 1, 12), ("training", 2, "NOR", 1, 9), ("training", 3, "HCM", 2, 10),
                ("testing", 101, "RV", 1, 14)]
    for split, num, group, ed, es in patients:
        d = root / split / f"patient{num:03d}"
        d.mkdir(parents=True)
        (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 180.0\nNbFrame: 20\n"
                                    "Weight: 80.0\n")
        geom = ((1.4, 1.4, 10.0), (float(num), -20.0, 5.0), ROT)
        for frame in (ed, es):
            stem = d / f"patient{num:03d}_frame{frame:02d}"
            sitk.WriteImage(_img(_volume(rng, (5, 20, 22), False), *geom), f"{stem}.nii.gz")
            sitk.WriteImage(_img(_volume(rng, (5, 20, 22), True), *geom), f"{stem}_gt.nii.gz")
        (d / f"patient{num:03d}_4d.nii.gz").write_bytes(b"not used")
    (root / "training" / "MANDATORY_CITATION.md").write_text("cite ACDC")
    return root


def make_camus(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for num in (1, 2):
        d = root / "database_nifti" / f"patient{num:04d}"
        d.mkdir(parents=True)
        for view in ("2CH", "4CH"):
            (d / f"Info_{view}.cfg").write_text(f"ED: 1\nES: 15\nNbFrame: 15\nSex: F\nAge: 6{num}\n"
                                                f"ImageQuality: Good\nEF: 5{num}.5\nFrameRate: 30.0\n")
            for phase in ("ED", "ES"):
                stem = d / f"patient{num:04d}_{view}_{phase}"
                geom = ((0.31, 0.154), (2.0, -1.0), (1.0, 0.0, 0.0, 1.0))
                end = ".mhd" if (num, view, phase) == (1, "2CH", "ED") else ".nii.gz"
                sitk.WriteImage(_img(_volume(rng, (24, 20), False), *geom), f"{stem}{end}")
                sitk.WriteImage(_img(_volume(rng, (24, 20), True), *geom), f"{stem}_gt{end}")
            (d / f"patient{num:04d}_{view}_half_sequence.nii.gz").write_bytes(b"not used")
    return root


def make_msd(root: Path) -> Path:
    rng = np.random.default_rng(2)
    task = root / "Task01_BrainTumour"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    for case, folder in (("BRATS_001", "imagesTr"), ("BRATS_002", "imagesTr"), ("BRATS_485", "imagesTs")):
        chans = [_img(_volume(rng, (6, 20, 22), False), (1.0, 1.0, 1.2), (-5.0, 3.0, 2.0), ROT) for _ in range(2)]
        sitk.WriteImage(sitk.JoinSeries(chans), str(task / folder / f"{case}.nii.gz"))
        if folder == "imagesTr":
            lab = _volume(rng, (6, 20, 22), True)
            lab[lab == 3] = 2
            sitk.WriteImage(_img(lab, (1.0, 1.0, 1.2), (-5.0, 3.0, 2.0), ROT),
                            str(task / "labelsTr" / f"{case}.nii.gz"))
    (task / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")
    dj = {"name": "BRATS", "description": "synthetic replica", "reference": "", "licence": "CC-BY-SA 4.0",
          "tensorImageSize": "4D", "modality": {"0": "FLAIR", "1": "T1w"},
          "labels": {"0": "background", "1": "edema", "2": "tumour"}, "numTraining": 2, "numTest": 1,
          "training": [{"image": f"./imagesTr/BRATS_00{i}.nii.gz", "label": f"./labelsTr/BRATS_00{i}.nii.gz"}
                       for i in (1, 2)],
          "test": ["./imagesTs/BRATS_485.nii.gz"]}
    (task / "dataset.json").write_text(json.dumps(dj))
    return task


def _convert(kind: str, raw: Path, out: Path) -> None:
    before = _snapshot(raw)
    assert main(["convert", kind, str(raw), "--out", str(out)]) == 0
    assert _snapshot(raw) == before  # the raw folder is only read
    assert main(["verify", str(out)]) == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def _rows(out: Path) -> list[dict]:
    with open(out / "cases.csv", newline="") as f:
        return list(csv.DictReader(f))


def _same_geometry(a: Path, b: Path) -> None:
    x, y = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    # NIfTI stores geometry as float32: a rewritten .mhd matches to that precision, a byte copy exactly
    assert x.GetSize() == y.GetSize() and np.allclose(x.GetSpacing(), y.GetSpacing(), rtol=1e-6, atol=0)
    assert np.allclose(x.GetOrigin(), y.GetOrigin(), rtol=1e-6, atol=1e-6)
    assert np.allclose(x.GetDirection(), y.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y))


def test_acdc(tmp_path, capsys):
    raw = make_acdc(tmp_path / "raw")
    out = tmp_path / "Dataset127_ACDC"
    _convert("acdc", raw, out)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["name"] == "ACDC" and dj["numTraining"] == 6 and dj["labels"]["LV"] == 3
    rows = {r["case"]: r for r in _rows(out)}
    assert rows["patient001_frame12"] == {"case": "patient001_frame12", "patient": "patient001", "phase": "ES",
                                          "frame": "12", "group": "DCM", "height": "180.0", "weight": "80.0",
                                          "split": "training"}
    assert rows["patient003_frame02"]["phase"] == "ED" and rows["patient101_frame14"]["split"] == "testing"
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["patient101_frame01_0000.nii.gz",
                                                                    "patient101_frame14_0000.nii.gz"]
    p2 = raw / "training/patient002"
    _same_geometry(p2 / "patient002_frame09.nii.gz", out / "imagesTr/patient002_frame09_0000.nii.gz")
    _same_geometry(p2 / "patient002_frame09_gt.nii.gz", out / "labelsTr/patient002_frame09.nii.gz")
    # the same conversion again: finished, nothing to do; another source or kind into it: refused
    assert main(["convert", "acdc", str(raw), "--out", str(out)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["convert", "camus", str(raw), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    assert main(["convert", "acdc", str(raw), "--out", str(tmp_path / "busy")]) == 2
    assert (tmp_path / "busy" / "x.txt").read_text() == "mine"
    assert main(["convert", "acdc", str(raw), "--out", str(raw / "inside")]) == 2


@pytest.mark.parametrize("damage,needle", [
    (lambda r: (r / "training/patient002/Info.cfg").unlink(), "patient002/Info.cfg: not found"),
    (lambda r: (r / "training/patient002/Info.cfg").write_text("ED: 1\nGroup: NOR\n"), "Info.cfg: no 'ES:' line"),
    (lambda r: (r / "training/patient003/patient003_frame10_gt.nii.gz").unlink(),
     "patient003_frame10_gt.nii.gz: not found"),
    (lambda r: (r / "training/patient001/patient001_frame12.nii.gz").write_bytes(b"garbage"),
     "patient001_frame12.nii.gz: cannot be read"),
])
def test_acdc_bad_layouts(tmp_path, capsys, damage, needle):
    raw = make_acdc(tmp_path / "raw")
    damage(raw)
    out = tmp_path / "Dataset127_ACDC"
    assert main(["convert", "acdc", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_camus(tmp_path, capsys):
    raw = make_camus(tmp_path / "raw")
    out = tmp_path / "Dataset140_CAMUS"
    _convert("camus", raw, out)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "LV": 1, "MYO": 2, "LA": 3} and dj["numTraining"] == 8
    rows = _rows(out)
    assert [(r["view"], r["phase"]) for r in rows[:4]] == [("2CH", "ED"), ("2CH", "ES"), ("4CH", "ED"), ("4CH", "ES")]
    assert rows[5]["case"] == "patient0002_2CH_ES" and rows[5]["patient"] == "patient0002" and rows[5]["ef"] == "52.5"
    _same_geometry(raw / "database_nifti/patient0002/patient0002_4CH_ES.nii.gz",
                   out / "imagesTr/patient0002_4CH_ES_0000.nii.gz")
    _same_geometry(raw / "database_nifti/patient0001/patient0001_2CH_ED_gt.mhd",  # the 2019 release's format
                   out / "labelsTr/patient0001_2CH_ED.nii.gz")
    (raw / "database_nifti/patient0002/Info_4CH.cfg").unlink()
    assert main(["convert", "camus", str(raw), "--out", str(tmp_path / "Dataset141_X")]) == 2
    assert "patient0002/Info_4CH.cfg: not found" in capsys.readouterr().err


def test_msd(tmp_path, capsys):
    task = make_msd(tmp_path / "raw")
    out = tmp_path / "Dataset001_BrainTumour"
    _convert("msd", task, out)
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "FLAIR", "1": "T1w"}
    assert dj["labels"] == {"background": 0, "edema": 1, "tumour": 2} and dj["numTraining"] == 2
    src = sitk.ReadImage(str(task / "imagesTr/BRATS_002.nii.gz"))
    arr4 = sitk.GetArrayFromImage(src)  # (channel, z, y, x)
    for c in (0, 1):
        ch = sitk.ReadImage(str(out / f"imagesTr/BRATS_002_{c:04d}.nii.gz"))
        assert ch.GetDimension() == 3 and np.array_equal(sitk.GetArrayFromImage(ch), arr4[c])
        assert np.allclose(ch.GetSpacing(), (1.0, 1.0, 1.2)) and np.allclose(ch.GetOrigin(), (-5.0, 3.0, 2.0))
        assert np.allclose(ch.GetDirection(), ROT)
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["BRATS_485_0000.nii.gz", "BRATS_485_0001.nii.gz"]
    assert not list(out.rglob("._*"))


def test_msd_bad_layouts(tmp_path, capsys):
    task = make_msd(tmp_path / "raw")
    dj = json.loads((task / "dataset.json").read_text())
    dj["modality"] = {"0": "FLAIR", "1": "T1w", "2": "T2w"}
    (task / "dataset.json").write_text(json.dumps(dj))
    assert main(["convert", "msd", str(task), "--out", str(tmp_path / "Dataset001_X")]) == 2
    assert "BRATS_001.nii.gz: has size" in capsys.readouterr().err
    dj["modality"] = {"0": "FLAIR", "1": "T1w"}
    dj["training"][1]["image"] = "../../outside.nii.gz"
    (task / "dataset.json").write_text(json.dumps(dj))
    assert main(["convert", "msd", str(task), "--out", str(tmp_path / "Dataset001_X")]) == 2
    assert "points outside the task folder" in capsys.readouterr().err
    (task / "dataset.json").unlink()
    assert main(["convert", "msd", str(task), "--out", str(tmp_path / "Dataset001_X")]) == 2
    assert "dataset.json: file not found" in capsys.readouterr().err
    assert not (tmp_path / "Dataset001_X").exists()
