"""Domain metrics of `autoseg evaluate`: head circumference (HC18) and vessel metrics (DRIVE), known answers first,
then through the command line."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.special import ellipe

from autoseg.cli import main
from autoseg.evaluation.head_circumference import (
    fit_ellipse,
    head_boundary,
    head_circumference_mm,
    ramanujan_perimeter,
)
from autoseg.evaluation.vessels import confusion, roc_auc, scores
from autoseg.inference.predictor import save_probabilities_npz


def exact_perimeter(a: float, b: float) -> float:
    a, b = max(a, b), min(a, b)
    return 4 * a * ellipe(1 - (b / a) ** 2)


def ellipse_mask(shape, spacing, center, a, b, angle=0.0) -> np.ndarray:
    """Pixels whose centre (row x spacing[0], column x spacing[1], in mm) lies inside the ellipse with semi-axes
    a (along the rotated row axis) and b, centred at ``center`` (mm)."""
    yy, xx = np.meshgrid(np.arange(shape[0]) * spacing[0], np.arange(shape[1]) * spacing[1], indexing="ij")
    y, x = yy - center[0], xx - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * y + s * x, -s * y + c * x
    return (u / a) ** 2 + (v / b) ** 2 <= 1


# --- head circumference: known answers ---------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [1.0, 0.9, 0.75, 0.6])
def test_ramanujan_matches_the_exact_perimeter(ratio):
    """Against the complete elliptic integral: fetal heads have axis ratios 0.6-1."""
    a = 40.0
    assert ramanujan_perimeter(a, a * ratio) == pytest.approx(exact_perimeter(a, a * ratio), rel=1e-5)
    assert ramanujan_perimeter(a, a) == pytest.approx(2 * np.pi * a, rel=1e-12)


@pytest.mark.parametrize("a,b,angle,spacing", [
    (30.0, 22.0, 0.0, (0.2, 0.2)),    # axis-aligned
    (30.0, 22.0, 0.6, (0.2, 0.2)),    # rotated
    (30.0, 22.0, 0.3, (0.1, 0.25)),   # rotated, anisotropic pixels (2.5:1)
    (25.0, 24.0, -1.1, (0.3, 0.12)),  # nearly a circle, anisotropic the other way
])
def test_head_circumference_of_a_rasterised_ellipse(a, b, angle, spacing):
    shape = (int(80 / spacing[0]), int(80 / spacing[1]))
    mask = ellipse_mask(shape, spacing, (40.0, 40.0), a, b, angle)
    hc = head_circumference_mm(mask, spacing)
    assert hc == pytest.approx(exact_perimeter(a, b), rel=1e-3)  # half a pixel off: 3e-3 or more


def test_fit_recovers_axes_and_angle_of_a_rotated_ellipse():
    sp = (0.15, 0.15)
    mask = ellipse_mask((500, 500), sp, (37.0, 38.0), 28.0, 19.0, 0.5)
    (yc, xc), (ax1, ax2), theta = fit_ellipse(head_boundary(mask) * sp)
    assert (yc, xc) == pytest.approx((37.0, 38.0), abs=0.05)
    axes = sorted([ax1, ax2])
    assert axes == pytest.approx([19.0, 28.0], abs=0.1)
    long_axis = theta if ax1 > ax2 else theta + np.pi / 2  # direction of the long axis, (row, column) frame
    assert np.cos(long_axis - 0.5) ** 2 == pytest.approx(1.0, abs=1e-3)


def test_largest_component_with_holes_filled_is_measured():
    sp = (0.2, 0.2)
    head = ellipse_mask((400, 400), sp, (40.0, 40.0), 30.0, 22.0, 0.2)
    clean = head_circumference_mm(head, sp)
    noisy = head.copy()
    noisy[190:215, 190:215] = False  # a hole inside the head
    noisy[2:4, 2:398] = noisy[2:398, 2:4] = True  # a thin L along two edges: smaller, but a longer outline
    assert head_circumference_mm(noisy, sp) == pytest.approx(clean, rel=1e-12)
    assert head_circumference_mm(np.zeros((50, 50), bool), sp) is None


def test_inset_measures_the_parallel_curve_inside():
    """A circle of radius r: inset d px at s mm per pixel gives 2 pi (r - d s)."""
    sp = (0.1, 0.1)
    mask = ellipse_mask((600, 600), sp, (30.0, 30.0), 25.0, 25.0)
    assert head_circumference_mm(mask, sp, inset_px=1.5) == pytest.approx(2 * np.pi * (25.0 - 0.15), rel=1e-3)
    assert head_circumference_mm(mask, sp) - head_circumference_mm(mask, sp, 1.5) == pytest.approx(
        2 * np.pi * 0.15, rel=1e-9)


# --- vessels: known answers ---------------------------------------------------------------------------------

def test_confusion_and_scores_by_hand():
    pred = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    ref = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    c = confusion(pred, ref)
    assert c == {"tp": 3, "fp": 1, "fn": 2, "tn": 4}
    s = scores(c)
    assert s["sensitivity"] == pytest.approx(3 / 5) and s["specificity"] == pytest.approx(4 / 5)
    assert s["accuracy"] == pytest.approx(7 / 10) and s["dice"] == pytest.approx(6 / 9)
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)  # two true negatives left out
    assert confusion(pred, ref, valid) == {"tp": 3, "fp": 1, "fn": 2, "tn": 2}
    assert scores(confusion(np.zeros(4, bool), np.zeros(4, bool)))["sensitivity"] is None


def test_roc_auc_known_answers():
    rng = np.random.default_rng(0)
    truth = rng.random(4000) < 0.1
    perfect = truth + 0.1 * rng.random(4000)  # every vessel pixel above every background pixel
    assert roc_auc(perfect, truth) == 1.0
    assert roc_auc(-perfect, truth) == 0.0
    assert roc_auc(np.full(4000, 0.3), truth) == 0.5  # all tied
    assert abs(roc_auc(rng.random(4000), truth) - 0.5) < 0.05
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.2, 0.7], [1, 1]) is None


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 6, 300) / 5.0  # few distinct values: many ties
    t = rng.random(300) < 0.3 + 0.4 * s / 2
    pos, neg = s[t], s[~t]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert roc_auc(s, t) == pytest.approx(pairwise, rel=1e-12)


# --- through `autoseg evaluate` -----------------------------------------------------------------------------

def _write(arr2d: np.ndarray, spacing, path) -> None:
    img = sitk.GetImageFromArray(arr2d.astype(np.uint8))
    img.SetSpacing((spacing[1], spacing[0]))  # SimpleITK: (x, y)
    sitk.WriteImage(img, str(path))


@pytest.fixture
def hc_dataset(tmp_path):
    """Three 2D heads with anisotropic pixels; predictions are ellipses of known size; cases.csv carries the
    analytic HC of the reference ellipses in hc_mm."""
    ref_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    sp = (0.2, 0.25)
    rows, truth = ["case,patient,hc_mm"], {}
    for i, (a, b, angle, grow) in enumerate([(30, 22, 0.3, 1.0), (26, 20, -0.4, 1.05), (33, 27, 1.0, 0.97)]):
        case = f"fetus{i}"
        _write(ellipse_mask((400, 320), sp, (40, 40), a, b, angle), sp, ref_dir / f"{case}.nii.gz")
        _write(ellipse_mask((400, 320), sp, (40, 40), a * grow, b * grow, angle), sp, pred_dir / f"{case}.nii.gz")
        truth[case] = (exact_perimeter(a, b), exact_perimeter(a * grow, b * grow))
        rows.append(f"{case},{i},{truth[case][0]:.3f}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "head": 1},
                                                       "file_ending": ".nii.gz"}))
    return tmp_path, truth


def test_head_circumference_through_evaluate(hc_dataset, capsys):
    root, truth = hc_dataset
    pred_dir = root / "pred"
    assert main(["evaluate", str(pred_dir), str(root / "labelsTs")]) == 0  # hc_mm found in cases.csv
    hc = json.loads((pred_dir / "summary.json").read_text())["head_circumference"]
    assert hc["reference"].endswith("cases.csv:hc_mm") and hc["label"] == "all foreground labels"
    for r in hc["per_case"]:
        ref, pred = truth[r["case"]]
        assert r["hc_ref_mm"] == pytest.approx(ref, abs=1e-3)
        assert r["hc_label_mm"] == pytest.approx(ref, rel=2e-3)
        assert r["hc_pred_mm"] == pytest.approx(pred, rel=2e-3)
        assert r["abs_diff_mm"] == pytest.approx(abs(r["hc_pred_mm"] - r["hc_ref_mm"]), abs=1e-9)
    ag = hc["agreement"]["prediction_vs_reference"]
    diffs = [truth[c][1] - truth[c][0] for c in sorted(truth)]
    assert ag["n"] == 3 and ag["mae"] == pytest.approx(np.mean(np.abs(diffs)), rel=0.02)
    assert ag["bias"] == pytest.approx(np.mean(diffs), abs=0.1)
    assert hc["agreement"]["label_vs_reference"]["mae"] < 0.1
    header = (pred_dir / "summary.csv").read_text().splitlines()[0]
    assert header.endswith("hc_pred_mm,hc_label_mm,hc_ref_mm,hc_abs_diff_mm")
    assert "prediction vs reference" in capsys.readouterr().out

    assert main(["evaluate", str(pred_dir), str(root / "labelsTs"), "--hc-reference", "none"]) == 0
    assert "head_circumference" not in json.loads((pred_dir / "summary.json").read_text())


@pytest.mark.parametrize("args,message", [
    (["--hc-reference", "{root}/cases.csv:head_mm"], "no column 'head_mm' (columns: case, patient, hc_mm)"),
    (["--hc-reference", "{root}/other.csv:hc_mm"], "other.csv: head circumference table not found"),
    (["--hc-label", "7"], "--hc-label 7: not a foreground label of"),
    (["--hc-inset-px", "-1"], "--hc-inset-px -1.0: give a distance in pixels >= 0"),
    (["--vessel-label", "background"], "--vessel-label background: not a foreground label"),
])
def test_bad_domain_arguments_fail_in_one_line(hc_dataset, capsys, args, message):
    root, _ = hc_dataset
    args = [a.replace("{root}", str(root)) for a in args]
    assert main(["evaluate", str(root / "pred"), str(root / "labelsTs")] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (root / "pred" / "summary.json").exists()


def test_case_missing_from_the_reference_table_is_named(hc_dataset, capsys):
    root, _ = hc_dataset
    lines = (root / "cases.csv").read_text().splitlines()
    (root / "cases.csv").write_text("\n".join(lines[:2] + [lines[3].replace(lines[3].split(",")[2], "")]) + "\n")
    assert main(["evaluate", str(root / "pred"), str(root / "labelsTs")]) == 2
    err = capsys.readouterr().err
    assert "no hc_mm for case(s) ['fetus1', 'fetus2']" in err and "--hc-reference none" in err


def test_vessel_metrics_through_evaluate(tmp_path, capsys):
    """Thin lines as vessels; probabilities written as `predict --save-probabilities` writes them, for one case
    of two: its AUC must equal the AUC of the same scores computed directly."""
    ref_dir, pred_dir = tmp_path / "labelsTr", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(1)
    expected = {}
    for i in range(2):
        ref = np.zeros((64, 60), np.uint8)
        ref[10:54, 20 + i] = 1  # a vertical vessel
        ref[30, 5:55] = 1  # a horizontal one
        prob = np.clip(0.6 * ref + 0.5 * rng.random(ref.shape), 0, 1).astype(np.float16)
        pred = (prob > 0.5).astype(np.uint8)
        _write(ref, (1.0, 1.0), ref_dir / f"eye{i}.nii.gz")
        _write(pred, (1.0, 1.0), pred_dir / f"eye{i}.nii.gz")
        expected[f"eye{i}"] = {**scores(confusion(pred > 0, ref > 0)),
                               "auc": roc_auc(prob, ref > 0) if i == 0 else None}
        if i == 0:
            save_probabilities_npz(np.stack([1 - prob, prob])[:, None], [0, 1], pred_dir / f"eye{i}.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "vessel": 1},
                                                       "file_ending": ".nii.gz"}))
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--vessel-label", "1"]) == 0
    summary = json.loads((pred_dir / "summary.json").read_text())
    v = summary["vessels"]
    assert v["label"] == "vessel" and v["cases_without_probabilities"] == ["eye1"]
    for r in v["per_case"]:
        for k, want in expected[r["case"]].items():
            assert r[k] == (pytest.approx(want, rel=1e-9) if want is not None else None), (r["case"], k)
    assert v["per_case"][0]["auc"] > 0.9
    assert v["pooled"]["tp"] == sum(r["tp"] for r in v["per_case"])
    assert v["mean"]["dice"]["mean"] == pytest.approx(np.mean([r["dice"] for r in v["per_case"]]))
    assert summary["mean"]["vessel"]["dice"]["mean"] == pytest.approx(v["mean"]["dice"]["mean"])
    out = capsys.readouterr().out
    assert "vessel metrics of label vessel" in out and "no AUC for 1 case(s)" in out

    save_probabilities_npz(np.ones((1, 1, 64, 60), np.float16), [0], pred_dir / "eye1.nii.gz")  # no vessel channel
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--vessel-label", "vessel"]) == 2
    assert "case eye1:" in capsys.readouterr().err


def test_report_carries_the_domain_sections(hc_dataset):
    root, _ = hc_dataset
    pred_dir = root / "pred"
    assert main(["evaluate", str(pred_dir), str(root / "labelsTs"), "--vessel-label", "head", "--report"]) == 0
    page = (pred_dir / "report" / "report.html").read_text()
    assert "<h2>Head circumference</h2>" in page and "prediction vs reference" in page
    assert "<h2>Vessel metrics: head</h2>" in page
    assert (pred_dir / "report" / "hc_agreement.png").is_file()
