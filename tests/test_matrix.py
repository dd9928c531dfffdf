"""benchmarks/matrix: patient-grouped folds that never share a patient, split folders of links with their own
dataset.json and cases.csv, the domain metric chosen from what the dataset holds, and the table from kept folds."""
import csv
import json

import pytest

from benchmarks.matrix import __main__ as M


def test_folds_partition_the_patients():
    groups = {f"c{i}": f"p{i // 2}" for i in range(20)}  # 10 patients, 2 cases each
    held = [M.fold_patients(groups, k, 3) for k in range(3)]
    assert set().union(*held) == set(groups.values())
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1:])
    assert sorted(len(h) for h in held) == [3, 3, 4]


@pytest.fixture
def grouped_dataset(tiny_phantom, tmp_path):
    """The phantom with a cases.csv naming patients (two cases each) and an hc_mm column."""
    import shutil

    root = tmp_path / "Dataset901_Phantom"
    shutil.copytree(tiny_phantom, root, symlinks=True)
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in (root / "imagesTr").glob("*_0000.nii.gz"))
    with open(root / "cases.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "patient", "hc_mm"])
        for i, c in enumerate(cases):
            w.writerow([c, f"pat{i // 2}", 100 + i])
    return root, cases


def test_split_links_every_file_and_keeps_patients_apart(grouped_dataset, tmp_path):
    root, cases = grouped_dataset
    train, test, info = M.make_split(root, tmp_path / "fold0", 0, 3)
    tr = {p.name for p in (train / "imagesTr").iterdir()}
    te = {p.name for p in (test / "imagesTs").iterdir()}
    assert not tr & te and len(tr) + len(te) == len(list((root / "imagesTr").iterdir()))
    assert all((train / "imagesTr" / n).is_symlink() for n in tr)
    assert json.loads((train / "dataset.json").read_text())["numTraining"] == info["train_cases"]
    rows = list(csv.DictReader(open(test / "cases.csv")))
    assert {r["case"] for r in rows} == {n[: -len("_0000.nii.gz")] for n in te}
    train_patients = {r["patient"] for r in csv.DictReader(open(train / "cases.csv"))}
    assert train_patients.isdisjoint({r["patient"] for r in rows})
    # the HC reference column is found, and no vessel label in a phantom heart
    args = M.evaluate_args(test)
    assert args[:2] == ["--hc-reference", f"{test / 'cases.csv'}:hc_mm"] and "--vessel-label" not in args
    assert args[2:4] == ["--hc-inset-px", "1.4"]


def test_table_states_mean_spread_and_gap_to_the_reference(tmp_path):
    res = tmp_path / "results" / "Hippocampus"
    res.mkdir(parents=True)
    for k, (a, b) in enumerate(((0.88, 0.86), (0.86, 0.84), (0.87, 0.85))):
        fold = {"dataset": "Hippocampus", "fold": k, "folds": 3, "budget": "10m", "configuration": "3d_fullres",
                "plan": {"spacing": [1.0, 1.0, 1.0], "patch_size": [40, 56, 40], "batch_size": 2, "features": 16,
                         "precision": "bf16", "planned_steps": 1100},
                "trained_steps": 1000, "stage_seconds": {"train": 600}, "dice": {"anterior": a, "posterior": b},
                "mean_dice": (a + b) / 2, "domain": {}, "load_average_start": [1.0] * 3,
                "load_average_end": [2.0] * 3, "started": "2026-12-06T05:00:00"}
        (res / f"fold{k}.json").write_text(json.dumps(fold))
    text = M.write_table(tmp_path / "results")
    row = next(line for line in text.splitlines() if line.startswith("| Hippocampus | 3/3"))
    assert "0.860 ± 0.010" in row and "anterior 0.870 ± 0.010" in row
    assert row.rstrip(" |").endswith("-0.035")  # 0.860 against the reference's 0.895


def test_brats_is_scored_on_its_published_regions(tmp_path):
    """BraTS's reference figures are region Dice (whole tumour = labels 1-4, tumour core = 1, 3, 4, enhancing = 4):
    the matrix declares those regions for a second evaluation, and the table compares their mean with the
    reference's mean (0.8535)."""
    labels = M.region_labels("BraTSSample")
    assert labels["labels"] == {"background": 0, "whole tumour": [1, 2, 3, 4], "tumour core": [1, 3, 4],
                                "enhancing tumour": [4]}
    assert M.region_labels("Hippocampus") is None
    res = tmp_path / "results" / "BraTSSample"
    res.mkdir(parents=True)
    for k, wt in enumerate((0.80, 0.70, 0.75)):
        fold = {"dataset": "BraTSSample", "fold": k, "folds": 3, "budget": "10m", "configuration": "2d",
                "plan": {"spacing": [1.0, 1.0], "patch_size": [160, 128], "batch_size": 4, "features": 16,
                         "precision": "bf16", "planned_steps": 2600},
                "trained_steps": 2700, "stage_seconds": {"train": 600}, "dice": {"edema": 0.5},
                "mean_dice": 0.5, "domain": {"regions": {"whole tumour": wt, "tumour core": 0.6,
                                                         "enhancing tumour": 0.5}},
                "load_average_start": [1.0] * 3, "load_average_end": [2.0] * 3, "started": "2026-12-06T12:00:00"}
        (res / f"fold{k}.json").write_text(json.dumps(fold))
    row = next(line for line in M.write_table(tmp_path / "results").splitlines()
               if line.startswith("| BraTSSample | 3/3"))
    assert "whole tumour 0.750 ± 0.050" in row and "enhancing tumour 0.500 ± 0.000" in row
    assert row.rstrip(" |").endswith(f"{(0.75 + 0.6 + 0.5) / 3 - 0.8535:+.3f}")


def test_same_recipe_states_each_recipes_domain_metric():
    """nnunet_same_recipe's table cell: HC's absolute difference and bias, vessel F1, regions; '-' without any."""
    from benchmarks.nnunet_same_recipe import domain_text

    assert domain_text({}) == "-"
    cell = domain_text({"head_circumference": {"mae_mm": 2.314, "bias_mm": -0.5, "n": 100},
                        "regions": {"whole tumour": 0.8, "tumour core": 0.55}})
    assert cell == "HC abs. diff 2.31 mm (bias -0.50, n 100); whole tumour 0.800; tumour core 0.550"
