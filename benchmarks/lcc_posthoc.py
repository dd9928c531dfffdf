"""What largest-connected-component postprocessing would have done to a budget cross-validation's test predictions:
each label kept to its largest component (one label at a time, and all together), then scored like the fold.

    python benchmarks/lcc_posthoc.py /tmp/acdc_cv20/fold*

Writes FOLD/pred_lcc_<labels>/ and FOLD/eval_lcc_<labels>/ and prints the mean foreground Dice per fold and
variant. A finding for deciding the procedure, not a decision: choosing a variant by these figures uses the
cross-validation's own test patients, so a chosen variant must be confirmed on other folds or data.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import SimpleITK as sitk

from autoseg import api
from autoseg.postprocessing.components import apply_postprocessing


def variant(fold: Path, labels: list[int]) -> float:
    tag = "".join(map(str, labels)) or "none"
    pred, out = fold / f"pred_lcc_{tag}", fold / f"eval_lcc_{tag}"
    test = next((fold / "split").glob("test*"))
    if not (out / "summary.json").is_file():
        pred.mkdir(exist_ok=True)
        for f in sorted((fold / "pred").glob("*.nii.gz")):
            img = sitk.ReadImage(str(f))
            seg = apply_postprocessing(sitk.GetArrayFromImage(img), labels)
            o = sitk.GetImageFromArray(seg)
            o.CopyInformation(img)
            sitk.WriteImage(o, str(pred / f.name))
        api.evaluate(pred, test / "labelsTs", dataset_json=test / "dataset.json", cases_csv=test / "cases.csv",
                     out=out)
    return json.loads((out / "summary.json").read_text())["foreground_mean_dice"]


def main(folds: list[str]) -> None:
    variants = [[], [1], [2], [3], [1, 2, 3]]
    rows = {}
    for f in map(Path, folds):
        base = json.loads((f / "eval" / "summary.json").read_text())["foreground_mean_dice"]
        rows[f.name] = [base] + [variant(f, v) for v in variants[1:]]
    names = ["none"] + ["LCC " + "+".join(map(str, v)) for v in variants[1:]]
    print("fold     " + "  ".join(f"{n:>10}" for n in names))
    for k, r in rows.items():
        print(f"{k:8} " + "  ".join(f"{x:10.4f}" for x in r))
    print("mean     " + "  ".join(f"{statistics.mean(c):10.4f}" for c in zip(*rows.values())))


if __name__ == "__main__":
    main(sys.argv[1:])
