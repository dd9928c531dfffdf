"""Run nnU-Net v2's planners on the generated datasets and dump what they planned (run with nnU-Net's python).

Usage: <nnunet venv>/bin/python run_nnunet.py ROOT OUT.json

For each dataset under ROOT/raw: the fingerprint is extracted by nnU-Net from the files ("files" datasets) or copied
from synthetic_fingerprint.json; then the default ExperimentPlanner and nnUNetPlannerResEncM/L/XL plan it. The dump
holds, per dataset: the fingerprint, each planner's plans, its wall time, and the separate-z resampling decision
nnU-Net's preprocessing would take for every case and configuration (from the case's own spacing and the target).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve()
os.environ["nnUNet_raw"] = str(ROOT / "raw")
os.environ["nnUNet_preprocessed"] = str(ROOT / "nnunet_preprocessed")
os.environ["nnUNet_results"] = str(ROOT / "nnunet_results")

import numpy as np  # noqa: E402
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor  # noqa: E402
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner  # noqa: E402
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (  # noqa: E402
    nnUNetPlannerResEncL,
    nnUNetPlannerResEncM,
    nnUNetPlannerResEncXL,
)
from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis  # noqa: E402

PLANNERS = {"default": ExperimentPlanner, "resenc-m": nnUNetPlannerResEncM, "resenc-l": nnUNetPlannerResEncL,
            "resenc-xl": nnUNetPlannerResEncXL}


def separate_z_decisions(plans: dict, fp: dict) -> dict:
    """What nnU-Net's preprocessing decides per case: it resamples the transposed case spacing to the
    configuration's spacing (2d: the case's own z spacing, then the 2d spacing) with force_separate_z=None."""
    fwd = plans["transpose_forward"]
    out = {}
    for cname, cfg in plans["configurations"].items():
        if "spacing" not in cfg:
            continue
        rows = []
        for sp in fp["spacings"]:
            sp_t = [sp[i] for i in fwd]
            target = list(cfg["spacing"])
            if len(target) < len(sp_t):
                target = [sp_t[0]] + target
            do_sep, axis = determine_do_sep_z_and_axis(None, np.array(sp_t), np.array(target))
            rows.append([bool(do_sep), None if axis is None else int(axis)])
        out[cname] = rows
    return out


def plan_one(name: str) -> dict:
    raw = ROOT / "raw" / name
    pre = ROOT / "nnunet_preprocessed" / name
    pre.mkdir(parents=True, exist_ok=True)
    res = {"seconds": {}}
    sink = io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stdout(sink):
        if (raw / "synthetic_fingerprint.json").is_file():
            shutil.copy(raw / "synthetic_fingerprint.json", pre / "dataset_fingerprint.json")
        else:
            DatasetFingerprintExtractor(name, num_processes=1).run(overwrite_existing=True)
    res["seconds"]["fingerprint"] = time.time() - t0
    fp = json.loads((pre / "dataset_fingerprint.json").read_text())
    res["fingerprint"] = fp
    res["plans"], res["separate_z"] = {}, {}
    for preset, cls in PLANNERS.items():
        t0 = time.time()
        with contextlib.redirect_stdout(sink):
            plans = cls(name).plan_experiment()
        res["seconds"][preset] = time.time() - t0
        plans = json.loads(json.dumps(plans, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        res["plans"][preset] = plans
        res["separate_z"][preset] = separate_z_decisions(plans, fp)
    return res


def main() -> None:
    out = {}
    for d in sorted((ROOT / "raw").iterdir()):
        if d.is_dir():
            out[d.name] = plan_one(d.name)
            print(f"{d.name}: {sum(out[d.name]['seconds'].values()):.1f}s", flush=True)
    tmp = Path(sys.argv[2] + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(sys.argv[2])


if __name__ == "__main__":
    main()
