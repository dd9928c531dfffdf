"""Compare autoseg's HD95/ASSD with MedPy's directed surface distances on every case and label of a folder.

    python benchmarks/check_distances.py PRED_DIR LABELS_DIR DATASET_JSON

Prints the largest absolute differences (mm); needs `pip install medpy`.
"""
import json
import sys
from pathlib import Path

import medpy.metric.binary as mb
import numpy as np

from autoseg.evaluation.surface import surface_metrics
from autoseg.io.images import read_label

surface_distances = getattr(mb, "__surface_distances")


def main(pred_dir: str, labels_dir: str, dataset_json: str) -> None:
    labels = {k: v for k, v in json.loads(Path(dataset_json).read_text())["labels"].items() if v != 0}
    ending = json.loads(Path(dataset_json).read_text())["file_ending"]
    worst_hd, worst_assd, n = 0.0, 0.0, 0
    for p in sorted(Path(pred_dir).glob("*" + ending)):
        case = p.name[: -len(ending)]
        pred, _ = read_label(p, case)
        ref, geom = read_label(Path(labels_dir) / p.name, case)
        for v in labels.values():
            a, b = pred == v, ref == v
            if not a.any() or not b.any():
                continue
            ours = surface_metrics(a, b, geom.spacing)
            d1 = surface_distances(a, b, geom.spacing, 1)
            d2 = surface_distances(b, a, geom.spacing, 1)
            hd95 = max(np.percentile(d1, 95), np.percentile(d2, 95))
            assd = np.concatenate([d1, d2]).mean()
            worst_hd = max(worst_hd, abs(ours["hd95_mm"] - hd95))
            worst_assd = max(worst_assd, abs(ours["assd_mm"] - assd))
            n += 1
    print(f"{n} case-label pairs; largest |HD95 difference| {worst_hd:.2e} mm, largest |ASSD difference| "
          f"{worst_assd:.2e} mm")


if __name__ == "__main__":
    main(*sys.argv[1:4])
