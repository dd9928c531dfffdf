"""CAMUS (Leclerc et al. 2019) as downloaded -> nnU-Net v2 raw layout.

Input: ``patientNNNN/`` folders (anywhere below RAW_DIR), each with ``patientNNNN_{2CH,4CH}_{ED,ES}.nii.gz``, the
matching ``..._gt.nii.gz`` (or the 2019 release's ``.mhd`` files, rewritten as NIfTI with the same geometry), and
``Info_2CH.cfg`` / ``Info_4CH.cfg`` (``ED``, ``ES``, ``ImageQuality``, ``EF``, ...). Output: one 2D case per view
and phase (``patientNNNN_2CH_ED``), labels 1 LV, 2 MYO, 3 LA, and cases.csv with patient, view, phase and the Info
file's quality, EF, sex and age. Half sequences are not converted.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...core.errors import AutosegError
from ...core.jsonio import save_json
from .common import check_label_fits_image, copy_as_nifti, csv_text, find_image, parse_cfg

LABELS = {"background": 0, "LV": 1, "MYO": 2, "LA": 3}
COLUMNS = ["case", "patient", "view", "phase", "image_quality", "ef", "sex", "age"]
VIEWS, PHASES = ("2CH", "4CH"), ("ED", "ES")


def convert_patient(pdir: Path, out: Path) -> list[dict]:
    rows = []
    for view in VIEWS:
        cfg_path = pdir / f"Info_{view}.cfg"
        info = parse_cfg(cfg_path, ("ED", "ES"))
        for phase in PHASES:
            case = f"{pdir.name}_{view}_{phase}"
            image, label = find_image(pdir, case), find_image(pdir, f"{case}_gt")
            check_label_fits_image(image, label)
            copy_as_nifti(image, out / "imagesTr" / f"{case}_0000.nii.gz")
            copy_as_nifti(label, out / "labelsTr" / f"{case}.nii.gz")
            rows.append({"case": case, "patient": pdir.name, "view": view, "phase": phase,
                         "image_quality": info.get("ImageQuality", ""), "ef": info.get("EF", ""),
                         "sex": info.get("Sex", ""), "age": info.get("Age", "")})
    return rows


def build(raw: Path, out: Path, name: str) -> int:
    dirs = sorted((d for d in raw.rglob("patient*") if d.is_dir() and re.fullmatch(r"patient\d{4}", d.name)),
                  key=lambda d: d.name)
    if not dirs:
        raise AutosegError(f"{raw}: no patientNNNN/ folders (the CAMUS layout: patient0001/Info_2CH.cfg, "
                           "patient0001_2CH_ED.nii.gz, patient0001_2CH_ED_gt.nii.gz, ...)")
    rows = []
    for d in dirs:
        rows += convert_patient(d, out)
    save_json({"name": name, "channel_names": {"0": "echo"}, "labels": LABELS, "numTraining": len(rows),
               "file_ending": ".nii.gz", "description": f"CAMUS converted by autoseg from {raw}"},
              out / "dataset.json")
    (out / "cases.csv").write_text(csv_text(rows, COLUMNS))
    return len(rows)
