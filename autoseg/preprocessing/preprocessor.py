"""Preprocess cases for one configuration: crop to nonzero, transpose, normalise, resample.

Training cases are written to ``run/preprocessed/<config>/<case>.npy`` (image, float32 C,Z,Y,X),
``<case>_seg.npy`` (int8/int16 Z,Y,X) and ``<case>.json`` (geometry, crop box, foreground locations per class).
Plain .npy files so that the training loader can memory-map them and read only the patch it needs.
Each file is written atomically and the .json last, so a case with a .json is complete and re-running skips it.
"""
from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.faults import fault_point
from ..core.jsonio import save_json, save_npy
from ..core.locks import folder_lock
from ..core.process import pool_map
from ..io.cropping import crop_to_nonzero
from ..io.dataset import DatasetInfo, verify_case
from ..io.images import Geometry
from ..planner.plans import ConfigurationPlan, Plans
from .normalization import normalize
from .resampling import case_resampling, new_shape_for, resample_data, resample_seg

MAX_LOCATIONS_PER_CLASS = 10_000


def target_spacing_for(cfg: ConfigurationPlan, spacing_t) -> list[float]:
    """A 2D configuration keeps each case's own slice spacing; 3D uses the planned spacing on every axis."""
    if cfg.dim == 2:
        return [float(spacing_t[0])] + [float(s) for s in cfg.spacing]
    return [float(s) for s in cfg.spacing]


def preprocess_image(data: np.ndarray, geom: Geometry, plans: Plans, cfg: ConfigurationPlan,
                     seg: np.ndarray | None = None, case: str = "image"):
    """Return (data, seg or None, properties). Used for training cases and at inference alike; ``case`` names the
    image in errors."""
    if data.shape[0] != len(cfg.normalization_schemes):  # e.g. dataset.json's channels changed after planning
        raise AutosegError(f"case {case}: the image has {data.shape[0]} channel(s), but the plans were made for "
                           f"{len(cfg.normalization_schemes)} ({plans.channel_names}); re-plan after changing the "
                           "dataset's channels (`autoseg plan`)")
    data_c, seg_c, bbox, mask = crop_to_nonzero(data, seg)
    fwd = plans.transpose_forward
    data_t = data_c.transpose([0] + [a + 1 for a in fwd])
    mask_t = mask.transpose(fwd)
    spacing_t = [geom.spacing[a] for a in fwd]
    target = target_spacing_for(cfg, spacing_t)
    new_shape = new_shape_for(data_t.shape[1:], spacing_t, target)
    per_case = case_resampling(spacing_t, target)  # separate coarse axis or not: this case's spacing decides
    seg_out = None
    if seg_c is not None:  # first, while the normalised copy of the image does not exist yet (lower peak memory)
        rl = cfg.resampling_label
        seg_out = resample_seg(seg_c.transpose(fwd), new_shape, plans.label_spec.label_values, rl["order"],
                               order_z=rl["order_z"], **per_case)
        del seg_c
    normed = normalize(data_t, cfg.normalization_schemes, cfg.use_mask_for_norm, mask_t,
                       plans.foreground_intensity_properties_per_channel)
    del mask, mask_t
    rd = cfg.resampling_data
    out = resample_data(normed, new_shape, rd["order"], order_z=rd["order_z"], **per_case)
    del normed
    props = {
        "geometry": geom.to_dict(),
        "bbox": bbox,  # in original (z, y, x) axis order
        "shape_after_crop_transposed": list(data_t.shape[1:]),
        "spacing_transposed": spacing_t,
        "target_spacing": target,
        "shape_after_resampling": list(out.shape[1:]),
    }
    return out, seg_out, props


def class_locations(seg: np.ndarray, labels, seed: int = 0) -> dict[str, list[list[int]]]:
    """Up to MAX_LOCATIONS_PER_CLASS voxel coordinates per foreground label, for foreground oversampling."""
    rng = np.random.default_rng(seed)
    out = {}
    for v in labels:
        if v == 0:
            continue
        coords = np.argwhere(seg == v)
        if len(coords) > MAX_LOCATIONS_PER_CLASS:
            coords = coords[rng.choice(len(coords), MAX_LOCATIONS_PER_CLASS, replace=False)]
        out[str(v)] = coords.astype(int).tolist()
    return out


def case_done(out_dir: Path, case: str) -> bool:
    return all((out_dir / f"{case}{s}").is_file() for s in (".npy", "_seg.npy", ".json"))


def preprocess_training_case(ds: DatasetInfo, plans: Plans, config: str, out_dir: Path, case: str) -> str:
    if case_done(out_dir, case):
        return case
    cfg = plans.configuration(config)
    data, seg, geom = verify_case(ds, case)
    out, seg_out, props = preprocess_image(data, geom, plans, cfg, seg, case)
    props["case"] = case
    props["class_locations"] = class_locations(seg_out, plans.label_spec.foreground_values)
    save_npy(out.astype(np.float32), out_dir / f"{case}.npy")
    save_npy(seg_out.astype(np.int8 if seg_out.max() < 128 else np.int16), out_dir / f"{case}_seg.npy")
    save_json(props, out_dir / f"{case}.json")  # last: marks the case complete
    fault_point("preprocess_case_done")
    return case


def plan_signature(plans: Plans, config: str) -> dict:
    """Everything in the plans that changes the preprocessed arrays."""
    cfg = plans.configuration(config)
    return {"spacing": cfg.spacing, "normalization_schemes": cfg.normalization_schemes,
            "use_mask_for_norm": cfg.use_mask_for_norm, "resampling_data": dict(cfg.resampling_data),
            "resampling_label": dict(cfg.resampling_label), "transpose_forward": plans.transpose_forward,
            "intensity": {k: dict(v) for k, v in plans.foreground_intensity_properties_per_channel.items()},
            "labels": plans.labels, **({"regions_class_order": plans.regions_class_order}
                                       if plans.regions_class_order else {}),
            "dataset_dir": plans.dataset_dir}


def _signature(plans: Plans, config: str) -> dict:
    """``plan_signature`` as it reads back from plan_signature.json (lists, string keys)."""
    return json.loads(json.dumps(plan_signature(plans, config)))


def is_preprocessed(cases: list[str], plans: Plans, config: str, out_dir: Path) -> bool:
    """True when ``out_dir`` was made under the current plans (its plan_signature.json) and holds every case
    complete: what ``run_preprocessing`` would leave as it is. Reads only the signature and the files' presence."""
    sig_path = out_dir / "plan_signature.json"
    return (sig_path.is_file() and json.loads(sig_path.read_text()) == _signature(plans, config)
            and all(case_done(out_dir, c) for c in cases))


def run_preprocessing(ds: DatasetInfo, plans: Plans, config: str, out_dir: Path, num_workers: int = 2) -> None:
    """Preprocess every case not yet done. Cases made under different plans (re-planned run) are redone.

    The folder is locked while cases are written (a second writer is refused); when every case is already done
    under the current plans nothing is written and no lock is taken, so concurrent trainings can share it."""
    if is_preprocessed(ds.cases, plans, config, out_dir):
        print(f"preprocess {config}: all {len(ds.cases)} cases already done", flush=True)
        return
    with folder_lock(out_dir, "preprocess"):
        _preprocess_locked(ds, plans, config, out_dir, num_workers, _signature(plans, config))


def _preprocess_locked(ds: DatasetInfo, plans: Plans, config: str, out_dir: Path, num_workers: int,
                       sig: dict) -> None:
    sig_path = out_dir / "plan_signature.json"
    if sig_path.is_file() and json.loads(sig_path.read_text()) != sig:
        stale = list(out_dir.glob("*.json"))
        print(f"preprocess {config}: the plans changed since {out_dir} was made; redoing all cases", flush=True)
        for p in stale:  # the .json marks a case complete: removing it makes the case be redone
            p.unlink()
    save_json(sig, sig_path)
    todo = [c for c in ds.cases if not case_done(out_dir, c)]
    if not todo:
        print(f"preprocess {config}: all {len(ds.cases)} cases already done", flush=True)
        return
    fn = partial(preprocess_training_case, ds, plans, config, out_dir)
    num_workers = max(1, min(num_workers, len(todo), os.cpu_count() or 1))
    pool_map(fn, todo, num_workers, desc=f"preprocess {config}")  # a kill or error stops the workers at once
