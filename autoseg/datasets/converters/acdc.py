"""ACDC (Bernard et al. 2018) as downloaded -> nnU-Net v2 raw layout.

Input: ``patientNNN/`` folders (directly under RAW_DIR, or under ``training/`` and ``testing/``), each with
``Info.cfg`` (``ED: 1``, ``ES: 12``, ``Group: DCM``, ...), ``patientNNN_frameXX.nii.gz`` and
``patientNNN_frameXX_gt.nii.gz`` for the two annotated frames. Output: one case per annotated frame,
``patientNNN_frameXX`` (training patients in imagesTr/labelsTr, ``testing/`` patients in imagesTs/labelsTs), and
cases.csv with patient, phase (ED/ES), frame, pathology group, height, weight and split. Files are byte copies.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...core.errors import AutosegError
from ...core.jsonio import save_json
from .common import cfg_int, check_label_fits_image, copy_file, csv_text, parse_cfg

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
COLUMNS = ["case", "patient", "phase", "frame", "group", "height", "weight", "split"]


def patient_dirs(raw: Path) -> list[tuple[Path, str]]:
    """[(patient folder, 'Tr' or 'Ts')], sorted by patient."""
    found = []
    for d in sorted(raw.rglob("patient*")):
        if d.is_dir() and re.fullmatch(r"patient\d{3}", d.name):
            found.append((d, "Ts" if "testing" in d.relative_to(raw).parts[:-1] else "Tr"))
    if not found:
        raise AutosegError(f"{raw}: no patientNNN/ folders (the ACDC layout: patient001/Info.cfg, "
                           "patient001_frame01.nii.gz, patient001_frame01_gt.nii.gz, ...)")
    return sorted(found, key=lambda t: t[0].name)


def convert_patient(pdir: Path, split: str, out: Path) -> list[dict]:
    cfg_path = pdir / "Info.cfg"
    info = parse_cfg(cfg_path, ("ED", "ES", "Group"))
    rows = []
    for phase in ("ED", "ES"):
        frame = cfg_int(info, phase, cfg_path)
        case = f"{pdir.name}_frame{frame:02d}"
        image, label = pdir / f"{case}.nii.gz", pdir / f"{case}_gt.nii.gz"
        check_label_fits_image(image, label)
        copy_file(image, out / f"images{split}" / f"{case}_0000.nii.gz")
        copy_file(label, out / f"labels{split}" / f"{case}.nii.gz")
        rows.append({"case": case, "patient": pdir.name, "phase": phase, "frame": frame, "group": info["Group"],
                     "height": info.get("Height", ""), "weight": info.get("Weight", ""),
                     "split": "training" if split == "Tr" else "testing"})
    if rows[0]["case"] == rows[1]["case"]:
        raise AutosegError(f"{cfg_path}: ED and ES name the same frame ({rows[0]['frame']})")
    return rows


def build(raw: Path, out: Path, name: str) -> int:
    rows = []
    for pdir, split in patient_dirs(raw):
        rows += convert_patient(pdir, split, out)
    n_train = sum(r["split"] == "training" for r in rows)
    if n_train == 0:
        raise AutosegError(f"{raw}: only testing/ patients found; imagesTr would be empty")
    save_json({"name": name, "channel_names": {"0": "cineMRI"}, "labels": LABELS, "numTraining": n_train,
               "file_ending": ".nii.gz", "description": f"ACDC converted by autoseg from {raw}"},
              out / "dataset.json")
    (out / "cases.csv").write_text(csv_text(rows, COLUMNS))
    return len(rows)
