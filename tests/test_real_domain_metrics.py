"""Domain metrics on the shared real data (skipped when ../shared/data is absent): head circumference on HC18's
reference labels against the challenge's hc_mm, and vessel metrics on DRIVE's labels."""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from autoseg.cli import main
from autoseg.evaluation.head_circumference import head_circumference_mm
from autoseg.inference.predictor import save_probabilities_npz
from autoseg.io.images import read_label

from .conftest import SHARED_DATA

pytestmark = pytest.mark.realdata
HC18 = SHARED_DATA / "Dataset032_HC18"
DRIVE = SHARED_DATA / "Dataset033_DRIVE"


def _need(root):
    if not (root / "dataset.json").is_file():
        pytest.skip(f"real-data test: {root} is absent (the shared datasets live beside the project root)")


@pytest.mark.slow
def test_hc18_reference_labels_measure_the_csv_head_circumference():
    """Every fifth of the 300 labels (all 300 measured 1.40 +- 0.05 px, docs/evaluation.md). The filled labels'
    edge lies a fixed 1.4 px (not mm) outside the ellipse whose perimeter is hc_mm: the reference runs along the
    drawn outline, the filled mask keeps its whole width. Measured on the curve 1.4 px inside, the HC agrees with
    hc_mm to a few hundredths of a mm, which only a right fit can do."""
    _need(HC18)
    raw, inset, offset_px = [], [], []
    with open(HC18 / "cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300
    for r in rows[::5]:
        lab, geom = read_label(HC18 / "labelsTr" / f"{r['case']}.nii.gz", r["case"])
        sp = geom.spacing[1:]
        assert sp[0] == pytest.approx(float(r["pixel_mm"]), rel=1e-6)
        ref = float(r["hc_mm"])
        hc0 = head_circumference_mm(lab[0] == 1, sp)
        raw.append(hc0 - ref)
        offset_px.append((hc0 - ref) / (2 * np.pi * sp[0]))
        inset.append(head_circumference_mm(lab[0] == 1, sp, inset_px=1.4) - ref)
    raw, inset, offset_px = map(np.asarray, (raw, inset, offset_px))
    assert 1.3 < offset_px.mean() < 1.5 and offset_px.std() < 0.1  # measured: 1.40 +- 0.05 px
    assert 0.8 < np.abs(raw).mean() < 1.3  # measured: 1.04 mm, all positive
    assert np.abs(inset).mean() < 0.1 and np.abs(inset).max() < 0.3  # measured: 0.031 mm, at most 0.16 mm


def test_hc18_through_evaluate_finds_hc_mm_by_itself(tmp_path, capsys):
    """Twelve reference labels as predictions: hc_mm is picked up from cases.csv beside dataset.json; without an
    inset the offset is reported with the inset that removes it."""
    _need(HC18)
    pred = tmp_path / "pred"
    pred.mkdir()
    cases = sorted(p.name for p in (HC18 / "labelsTr").glob("*.nii.gz"))[::25]
    for name in cases:
        (pred / name).symlink_to(HC18 / "labelsTr" / name)
    assert main(["evaluate", str(pred), str(HC18 / "labelsTr"), "--out", str(tmp_path / "raw")]) == 0
    assert "--hc-inset-px 1.4 measures on the reference ellipse" in capsys.readouterr().out
    assert main(["evaluate", str(pred), str(HC18 / "labelsTr"), "--out", str(tmp_path / "ev"),
                 "--hc-inset-px", "1.4"]) == 0
    hc = json.loads((tmp_path / "ev" / "summary.json").read_text())["head_circumference"]
    assert hc["reference"].endswith("Dataset032_HC18/cases.csv:hc_mm") and len(hc["per_case"]) == len(cases)
    assert hc["agreement"]["label_vs_reference"]["mae"] < 0.1
    assert hc["agreement"]["prediction_vs_label"]["mae"] == 0
    assert hc["agreement"]["prediction_vs_reference"]["pearson_r"] > 0.9999


@pytest.mark.slow
def test_drive_vessel_metrics_on_constructed_predictions(tmp_path):
    """DRIVE's 20 first-observer labels against predictions built from them: a dilation misses no vessel
    (sensitivity 1) but adds false positives; blurred labels as probabilities rank vessels first (AUC near 1)."""
    _need(DRIVE)
    pred = tmp_path / "pred"
    pred.mkdir()
    cases = sorted(p.name[:-4] for p in (DRIVE / "labelsTr").glob("*.png"))
    assert len(cases) == 20
    for case in cases:
        lab, _ = read_label(DRIVE / "labelsTr" / f"{case}.png", case)
        vessel = lab[0] == 1
        sitk.WriteImage(sitk.GetImageFromArray(ndimage.binary_dilation(vessel).astype(np.uint8)),
                        str(pred / f"{case}.png"))
        p = ndimage.gaussian_filter(vessel.astype(np.float32), 1.0)
        save_probabilities_npz(np.stack([1 - p, p])[:, None].astype(np.float16), [0, 1], pred / f"{case}.png")
    assert main(["evaluate", str(pred), str(DRIVE / "labelsTr"), "--vessel-label", "vessel"]) == 0
    v = json.loads((pred / "summary.json").read_text())["vessels"]
    assert v["cases_without_probabilities"] == [] and len(v["per_case"]) == 20
    for r in v["per_case"]:
        assert r["sensitivity"] == 1.0 and r["fn"] == 0 and r["specificity"] < 1.0
        assert r["auc"] > 0.99
    fraction = (v["pooled"]["tp"] + v["pooled"]["fn"]) / sum(v["pooled"][k] for k in ("tp", "fp", "fn", "tn"))
    assert 0.05 < fraction < 0.15  # vessels are about 9% of a DRIVE image
