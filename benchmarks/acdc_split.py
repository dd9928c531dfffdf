"""Make the benchmark's patient-grouped ACDC split: 48 training patients and 12 test patients.

    python benchmarks/acdc_split.py ../shared/data/Dataset027_ACDC /tmp/acdc_split [--dataset-id 127]

Writes, with symbolic links to the shared files (nothing is copied):
  OUT/Dataset127_ACDC48/{imagesTr,labelsTr,dataset.json,cases.csv}   the 48 training patients (96 volumes)
  OUT/test12/{imagesTs,labelsTs,dataset.json,cases.csv}               the 12 test patients (24 volumes)
The test patients are every fifth patient in sorted order (positions 2, 7, 12, ...), which takes two or three
from each ACDC pathology group. autoseg and nnU-Net train on the same folder and are scored on the same 24 volumes.
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
    a = ap.parse_args()
    src, out = Path(a.acdc), Path(a.out)
    rows = list(csv.DictReader(open(src / "cases.csv")))
    patients = sorted({r["patient"] for r in rows})
    test = set(patients[2::5])
    dj = json.loads((src / "dataset.json").read_text())
    for name, keep, img, lab in ((f"Dataset{a.dataset_id:03d}_ACDC48", lambda p: p not in test, "imagesTr",
                                  "labelsTr"), ("test12", lambda p: p in test, "imagesTs", "labelsTs")):
        d = out / name
        sel = [r for r in rows if keep(r["patient"])]
        for r in sel:
            link(src / "imagesTr" / f"{r['case']}_0000.nii.gz", d / img / f"{r['case']}_0000.nii.gz")
            link(src / "labelsTr" / f"{r['case']}.nii.gz", d / lab / f"{r['case']}.nii.gz")
        (d / "dataset.json").write_text(json.dumps({**dj, "name": "ACDC48" if img == "imagesTr" else "ACDC12",
                                                    "numTraining": len(sel)}, indent=2))
        with open(d / "cases.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(sel)
        print(f"{d}: {len(sel)} cases, {len({r['patient'] for r in sel})} patients")
    print("test patients:", " ".join(sorted(test)))


if __name__ == "__main__":
    main()
