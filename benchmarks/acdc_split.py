"""Make the benchmark's patient-grouped ACDC split: 48 training patients and 12 test patients.

    python benchmarks/acdc_split.py ../shared/data/Dataset027_ACDC /tmp/acdc_split [--dataset-id 127]
    python benchmarks/acdc_split.py ../shared/data/Dataset027_ACDC /tmp/acdc_cv/fold0 --folds 3 --fold 0

Writes, with symbolic links to the shared files (nothing is copied):
  OUT/Dataset127_ACDC48/{imagesTr,labelsTr,dataset.json,cases.csv}   the 48 training patients (96 volumes)
  OUT/test12/{imagesTs,labelsTs,dataset.json,cases.csv}               the 12 test patients (24 volumes)
The test patients are every fifth patient in sorted order (positions 2, 7, 12, ...), which takes two or three
from each ACDC pathology group. autoseg and nnU-Net train on the same folder and are scored on the same 24 volumes.

With ``--folds K --fold k`` the split is fold k of a patient-grouped K-fold cross-validation instead: the test
patients are every K-th patient in sorted order starting at position k (each pathology group is spread over the
folds), the training folder holds all the others, and its name says how many patients it has.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("acdc")
    ap.add_argument("out")
    ap.add_argument("--dataset-id", type=int, default=127)
    ap.add_argument("--folds", type=int, default=0, help="K of a K-fold cross-validation (0: the fixed 48/12 split)")
    ap.add_argument("--fold", type=int, default=0, help="which of the K folds is the test set")
    a = ap.parse_args()
    if a.folds and not 0 <= a.fold < a.folds:
        ap.error(f"--fold must be in 0..{a.folds - 1}")
    src, out = Path(a.acdc), Path(a.out)
    rows = list(csv.DictReader(open(src / "cases.csv")))
    patients = sorted({r["patient"] for r in rows})
    test = set(patients[a.fold::a.folds] if a.folds else patients[2::5])
    n_train, n_test = len(patients) - len(test), len(test)
    dj = json.loads((src / "dataset.json").read_text())
    test_name = f"test{n_test}" if a.folds else "test12"
    for name, keep, img, lab in ((f"Dataset{a.dataset_id:03d}_ACDC{n_train}", lambda p: p not in test, "imagesTr",
                                  "labelsTr"), (test_name, lambda p: p in test, "imagesTs", "labelsTs")):
        d = out / name
        sel = [r for r in rows if keep(r["patient"])]
        for r in sel:
            link(src / "imagesTr" / f"{r['case']}_0000.nii.gz", d / img / f"{r['case']}_0000.nii.gz")
            link(src / "labelsTr" / f"{r['case']}.nii.gz", d / lab / f"{r['case']}.nii.gz")
        short = f"ACDC{n_train}" if img == "imagesTr" else f"ACDC{n_test}"
        (d / "dataset.json").write_text(json.dumps({**dj, "name": short, "numTraining": len(sel)}, indent=2))
        with open(d / "cases.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(sel)
        print(f"{d}: {len(sel)} cases, {len({r['patient'] for r in sel})} patients")
    print("test patients:", " ".join(sorted(test)))


if __name__ == "__main__":
    main()
