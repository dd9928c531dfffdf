"""`autoseg evaluate` on phantom predictions: summary layout, phases, clinical indices, and the HTML report."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main


@pytest.fixture(scope="module")
def predictions(tiny_phantom, tmp_path_factory):
    """Reference labels with a deterministic error: the LV eroded by one voxel in-plane, an RV island added."""
    from scipy.ndimage import binary_erosion

    out = tmp_path_factory.mktemp("preds")
    for p in sorted((tiny_phantom / "labelsTr").glob("*.nii.gz")):
        ref = sitk.ReadImage(str(p))
        a = sitk.GetArrayFromImage(ref)
        lv = a == 3
        er = np.stack([binary_erosion(s) for s in lv])
        a[lv & ~er] = 2
        a[0, 1:3, 1:3] = 1
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(ref)
        sitk.WriteImage(img, str(out / p.name))
    return out


def test_summary_layout_phases_and_clinical(predictions, tiny_phantom, tmp_path):
    assert main(["evaluate", str(predictions), str(tiny_phantom / "labelsTr"), "--dataset-json",
                 str(tiny_phantom / "dataset.json"), "--cases", str(tiny_phantom / "cases.csv"),
                 "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s["mean"]) == {"RV", "MYO", "LV"}
    for metric in ("dice", "iou", "hd95_mm", "assd_mm"):
        assert {"mean", "std", "n"} <= set(s["mean"]["LV"][metric])
    assert s["mean"]["LV"]["dice"]["mean"] < 1 and s["mean"]["LV"]["hd95_mm"]["mean"] > 0
    assert set(s["mean_by_phase"]) == {"ED", "ES"}
    row = s["per_case"][0]
    assert {"case", "patient", "phase", "LV"} <= set(row) and set(row["LV"]) == {"dice", "iou", "hd95_mm", "assd_mm"}
    clin = s["clinical"]
    assert len(clin["per_patient"]) == 5
    for key in ("LV_EF_pct", "LV_EDV_ml", "RV_EF_pct", "MYO_mass_g"):
        assert key in clin["agreement"] and clin["agreement"][key]["n"] == 5
    assert clin["agreement"]["LV_EDV_ml"]["bias"] < 0  # eroded LV -> smaller predicted volumes
    # the reference EF of a phantom patient is exactly what its label volumes give
    r = clin["per_patient"][0]["ref"]
    assert r["LV_EF_pct"] == pytest.approx(100 * (r["LV_EDV_ml"] - r["LV_ESV_ml"]) / r["LV_EDV_ml"])
    assert "LV_hd95_mm" in (tmp_path / "summary.csv").read_text().splitlines()[0]


@pytest.mark.slow  # evaluate --report draws every figure (and Chromium renders the page)
def test_report_page_renders_in_chromium(predictions, tiny_phantom, tmp_path):
    assert main(["evaluate", str(predictions), str(tiny_phantom / "labelsTr"), "--out", str(tmp_path),
                 "--report"]) == 0
    page = tmp_path / "report" / "report.html"
    text = page.read_text()
    assert "Bland-Altman" in text and "Best, median and worst" in text and "data:image/gif;base64" in text
    assert len(list((tmp_path / "report").glob("case_*.png"))) == 3
    assert (tmp_path / "report" / "agreement.png").is_file()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'); the page was written but not rendered")
    shot = tmp_path / "report.png"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    n_total = int(dom.split('data-images="')[1].split('"')[0])
    n_loaded = int(dom.split('data-images-loaded="')[1].split('"')[0])
    assert n_total >= 6 and n_loaded == n_total
    subprocess.run(base + ["--window-size=1100,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_echo_simpson_biplane_through_evaluate(tmp_path):
    """2D apical views of prolate ellipsoids: EDV/ESV from the reference must match 4/3 pi a^2 c, and EF follow."""
    from scipy.ndimage import binary_erosion

    ref_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    sp = 0.35
    yy, xx = np.meshgrid(np.arange(360) * sp, np.arange(300) * sp, indexing="ij")
    rows, truth = ["case,patient,phase,view"], {}
    for i, (a_ed, a_es, c) in enumerate([(22, 15, 48), (25, 20, 50), (20, 12, 45)]):
        for ph, a in (("ED", a_ed), ("ES", a_es)):
            truth[(i, ph)] = 4 / 3 * np.pi * a * a * c / 1000
            for view in ("2CH", "4CH"):
                lab = np.zeros(yy.shape, np.uint8)
                lv = ((yy - 63) / c) ** 2 + ((xx - 52) / a) ** 2 <= 1
                lab[lv] = 1
                case = f"p{i}_{ph}_{view}"
                rows.append(f"{case},p{i},{ph},{view}")
                for folder, arr in ((ref_dir, lab), (pred_dir, binary_erosion(lv).astype(np.uint8))):
                    img = sitk.GetImageFromArray(arr)
                    img.SetSpacing((sp, sp))
                    sitk.WriteImage(img, str(folder / f"{case}.nii.gz"))
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
                                                       "file_ending": ".nii.gz"}))
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--dataset-json", str(tmp_path / "dataset.json")]) == 0
    clin = json.loads((pred_dir / "summary.json").read_text())["clinical"]
    assert clin["method"].startswith("Simpson")
    for i, r in enumerate(clin["per_patient"]):
        assert r["ref"]["LV_EDV_ml"] == pytest.approx(truth[(i, "ED")], rel=0.02)
        assert r["ref"]["LV_ESV_ml"] == pytest.approx(truth[(i, "ES")], rel=0.02)
    assert clin["agreement"]["LV_EDV_ml"]["bias"] < 0  # eroded predictions
