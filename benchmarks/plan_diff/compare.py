"""Plan every generated dataset with autoseg and compare every planned field with nnU-Net's dump.

Fields compared, per dataset and preset (default, resenc-m, resenc-l, resenc-xl):
- plan level: the set of configurations, transpose_forward/backward, original median spacing and shape;
- per configuration: spacing, patch, batch, median image size, normalisation schemes and use_mask_for_norm,
  batch_dice, network class, stages, features, kernels, strides, encoder blocks per stage, decoder convs per stage,
  cascade wiring (previous_stage, next_stage);
- per case and configuration: the separate-z resampling decision (flag and axis);
- fingerprint ("files" datasets, extracted by each tool from the same files): spacings, shapes after crop, crop
  ratio, foreground intensity statistics.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from autoseg.io.dataset import load_dataset
from autoseg.planner import heuristics as H
from autoseg.planner.fingerprint import extract_fingerprint
from autoseg.planner.planner import make_plans

PRESETS = ("default", "resenc-m", "resenc-l", "resenc-xl")
CONFIG_FIELDS = ("spacing", "patch_size", "batch_size", "median_image_size_in_voxels", "normalization_schemes",
                 "use_mask_for_norm", "batch_dice", "network_class", "n_stages", "features_per_stage",
                 "kernel_sizes", "strides", "encoder_blocks", "n_conv_per_stage_decoder", "previous_stage",
                 "next_stage")

# Disagreements kept on purpose: (dataset name substring, preset or "*", exact field names) -> why. Every entry
# names its fields; tests/test_plan_diff.py fails on an entry that no longer matches a disagreement (then autoseg
# agrees with nnU-Net again and the entry must go). docs/planning.md ("Checked against nnU-Net") gives the
# evidence.
_THIN_Z_3D = tuple(f"3d_fullres.{f}" for f in CONFIG_FIELDS + ("separate_z_per_case",))
INTENDED: list[tuple[str, str, tuple[str, ...], str]] = [
    ("2d_nii_thin_z", "*", ("transpose_forward", "transpose_backward", "original_median_spacing_after_transp",
                            "original_median_shape_after_transp", "2d.spacing", "2d.patch_size", "2d.batch_size",
                            "2d.median_image_size_in_voxels", "2d.kernel_sizes", "2d.strides",
                            "2d.separate_z_per_case"),
     "single-slice data is never transposed by autoseg (2d patch 448x320 on the image plane); nnU-Net moves the "
     "thin slice axis away from the front and plans a 1x448 2d patch (same number of stages and features)"),
    ("2d_nii_thin_z", "*", ("configurations",) + _THIN_Z_3D,
     "single-slice data gets no 3d_fullres from autoseg; nnU-Net plans one on one-voxel-thick images"),
]


def _short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def _config_view(cfg: dict) -> dict:
    a = cfg["architecture"]["arch_kwargs"]
    blocks = a.get("n_blocks_per_stage", a.get("n_conv_per_stage"))
    return {"spacing": cfg["spacing"], "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
            "median_image_size_in_voxels": cfg["median_image_size_in_voxels"],
            "normalization_schemes": cfg["normalization_schemes"], "use_mask_for_norm": cfg["use_mask_for_norm"],
            "batch_dice": cfg["batch_dice"], "network_class": _short(cfg["architecture"]["network_class_name"]),
            "n_stages": a["n_stages"], "features_per_stage": a["features_per_stage"],
            "kernel_sizes": a["kernel_sizes"], "strides": a["strides"], "encoder_blocks": blocks,
            "n_conv_per_stage_decoder": a["n_conv_per_stage_decoder"],
            "previous_stage": cfg.get("previous_stage"), "next_stage": cfg.get("next_stage")}


def nnunet_view(plans: dict, sepz: dict) -> dict:
    confs = plans["configurations"]
    out = {"configurations": sorted(confs), "transpose_forward": plans["transpose_forward"],
           "transpose_backward": plans["transpose_backward"],
           "original_median_spacing_after_transp": plans["original_median_spacing_after_transp"],
           "original_median_shape_after_transp": plans["original_median_shape_after_transp"]}
    for name, c in confs.items():
        if "inherits_from" in c:  # resolved the way nnU-Net's plans manager does
            c = {**confs[c["inherits_from"]], **c}
        for k, v in _config_view(c).items():
            out[f"{name}.{k}"] = v
    for name, c in confs.items():  # a configuration that inherits resamples like its parent
        rows = sepz.get(name, sepz.get(c.get("inherits_from", ""), "<absent>"))
        out[f"{name}.separate_z_per_case"] = rows
    return out


def autoseg_view(plans, case_spacings: list) -> dict:
    d = plans.to_dict()
    confs = d["configurations"]
    out = {"configurations": sorted(confs), "transpose_forward": d["transpose_forward"],
           "transpose_backward": d["transpose_backward"],
           "original_median_spacing_after_transp": d["original_median_spacing_after_transp"],
           "original_median_shape_after_transp": [int(round(v)) for v in d["original_median_shape_after_transp"]]}
    fwd = d["transpose_forward"]
    for name, c in confs.items():
        for k, v in _config_view(c).items():
            out[f"{name}.{k}"] = v
        rows = []
        for sp in case_spacings:
            sp_t = [sp[i] for i in fwd]
            target = list(c["spacing"]) if len(c["spacing"]) == 3 else [sp_t[0]] + list(c["spacing"])
            if hasattr(H, "separate_z_decision"):
                rows.append(list(H.separate_z_decision(sp_t, target)))
            else:  # before the per-case rule: one flag per configuration, along the first axis
                sep = bool(c["resampling_data"]["separate_z"])
                rows.append([sep, 0 if sep else None])
        out[f"{name}.separate_z_per_case"] = rows
    return out


def _equal(a, b, rel: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y, rel, abs_tol) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_tol)
    return a == b


def fingerprint_from_nnunet(fp: dict) -> dict:
    """nnU-Net's dataset_fingerprint.json in autoseg's fingerprint format (same numbers, autoseg key names)."""
    return {"spacings": fp["spacings"], "shapes_after_crop": fp["shapes_after_crop"],
            "median_relative_size_after_crop": fp["median_relative_size_after_cropping"],
            "foreground_intensity_properties_per_channel": fp["foreground_intensity_properties_per_channel"]}


def fingerprint_diffs(ours: dict, theirs: dict) -> list[tuple[str, object, object]]:
    out = []
    pairs = [("fingerprint.spacings", ours["spacings"], theirs["spacings"], 1e-5),
             ("fingerprint.shapes_after_crop", ours["shapes_after_crop"], theirs["shapes_after_crop"], 0),
             ("fingerprint.median_relative_size_after_crop", ours["median_relative_size_after_crop"],
              theirs["median_relative_size_after_cropping"], 1e-6)]
    for c, p in theirs["foreground_intensity_properties_per_channel"].items():
        q = ours["foreground_intensity_properties_per_channel"][c]
        for k in sorted(p):
            pairs.append((f"fingerprint.intensity[{c}].{k}", q[k], p[k], 1e-3))
    for name, a, b, rel in pairs:  # intensities: nnU-Net samples them in float32
        if not _equal(a, b, rel, 1e-3 if "intensity" in name else 1e-9):
            out.append((name, a, b))
    return out


def intended_reason(dataset: str, preset: str, fld: str) -> str | None:
    for ds, pr, names, why in INTENDED:
        if ds in dataset and pr in ("*", preset) and fld in names:
            return why
    return None


def compare_all(root: Path, nnunet: dict, presets=PRESETS, names: list[str] | None = None) -> tuple[list[dict], dict]:
    """Return (one row per differing field, statistics); ``names``: only datasets whose name holds one of these."""
    index = json.loads((root / "index.json").read_text())
    if names:
        index = [e for e in index if any(n in e["name"] for n in names)]
    rows: list[dict] = []
    stats = {"datasets": 0, "fields": 0, "autoseg_seconds": 0.0, "nnunet_seconds": 0.0}
    for entry in index:
        name, spec = entry["name"], entry["spec"]
        theirs = nnunet[name]
        ds = load_dataset(root / "raw" / name)
        if spec["kind"] == "files":
            fp = extract_fingerprint(ds, num_workers=1)
            for fld, a, b in fingerprint_diffs(fp, theirs["fingerprint"]):
                rows.append(_row(name, "-", fld, a, b))
            stats["fields"] += 3 + 7 * len(spec["channel_names"])
        else:
            fp = fingerprint_from_nnunet(theirs["fingerprint"])
        stats["datasets"] += 1
        for preset in presets:
            t0 = time.time()
            try:
                plans = make_plans(ds, fp, preset=preset)
            except TypeError:  # a planner without presets (the harness's "before" run)
                if preset != "default":
                    continue
                plans = make_plans(ds, fp)
            stats["autoseg_seconds"] += time.time() - t0
            stats["nnunet_seconds"] += theirs.get("seconds", {}).get(preset, 0.0)  # not in committed refs
            ours = autoseg_view(plans, fp["spacings"])
            ref = nnunet_view(theirs["plans"][preset], theirs["separate_z"][preset])
            for fld in sorted(set(ours) | set(ref)):
                stats["fields"] += 1
                a, b = ours.get(fld, "<absent>"), ref.get(fld, "<absent>")
                if not _equal(a, b):
                    rows.append(_row(name, preset, fld, a, b))
    return rows, stats


_ARCH_KEYS = ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_blocks_per_stage", "n_conv_per_stage",
              "n_conv_per_stage_decoder")
_CONFIG_KEYS = ("inherits_from", "spacing", "patch_size", "batch_size", "median_image_size_in_voxels",
                "normalization_schemes", "use_mask_for_norm", "batch_dice", "previous_stage", "next_stage")
_PLAN_KEYS = ("transpose_forward", "transpose_backward", "original_median_spacing_after_transp",
              "original_median_shape_after_transp")
_FINGERPRINT_KEYS = ("spacings", "shapes_after_crop", "median_relative_size_after_cropping",
                     "foreground_intensity_properties_per_channel")


def index_digest(index: list[dict]) -> str:
    """Fingerprint of the generated family (datasets.generate's index): committed references name the one they
    were made from."""
    return hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()


def trim_plans(plans: dict) -> dict:
    """The part of nnU-Net's plans that nnunet_view reads (the committed references keep only this)."""
    out = {k: plans[k] for k in _PLAN_KEYS}
    out["configurations"] = {}
    for name, c in plans["configurations"].items():
        t = {k: c[k] for k in _CONFIG_KEYS if k in c}
        if "architecture" in c:
            a = c["architecture"]
            t["architecture"] = {"network_class_name": a["network_class_name"],
                                 "arch_kwargs": {k: a["arch_kwargs"][k] for k in _ARCH_KEYS if k in a["arch_kwargs"]}}
        out["configurations"][name] = t
    return out


def trim_dump(dump: dict) -> dict:
    """run_nnunet.py's dump without wall times and without the plans' fields compare_all does not read."""
    return {name: {"fingerprint": {k: d["fingerprint"][k] for k in _FINGERPRINT_KEYS},
                   "plans": {p: trim_plans(v) for p, v in d["plans"].items()}, "separate_z": d["separate_z"]}
            for name, d in dump.items()}


def _row(dataset: str, preset: str, fld: str, ours, theirs) -> dict:
    return {"dataset": dataset, "preset": preset, "field": fld, "autoseg": ours, "nnunet": theirs,
            "intended": intended_reason(dataset, preset, fld)}


def _short_value(v, n: int = 60) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    if isinstance(v, list) and len(s) > n and v and isinstance(v[0], list):  # per-case lists: show the differing
        s = json.dumps(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def table(rows: list[dict]) -> str:
    from autoseg.core.progress import format_table

    body = [[r["dataset"].split("_", 1)[1], r["preset"], r["field"], _short_value(r["autoseg"]),
             _short_value(r["nnunet"]), "intended" if r["intended"] else "DIFF"] for r in rows]
    return format_table(["dataset", "preset", "field", "autoseg", "nnU-Net", ""], body)


def per_case_detail(rows: list[dict]) -> None:
    """Per-case lists are long: show only the cases that differ."""
    for r in rows:
        if r["field"].endswith("separate_z_per_case") and isinstance(r["autoseg"], list) \
                and isinstance(r["nnunet"], list) and len(r["autoseg"]) == len(r["nnunet"]):
            idx = [i for i, (a, b) in enumerate(zip(r["autoseg"], r["nnunet"])) if a != b]
            r["autoseg"] = {f"case_{i:03d}": r["autoseg"][i] for i in idx[:3]}
            r["nnunet"] = {f"case_{i:03d}": r["nnunet"][i] for i in idx[:3]}


def summarize(rows: list[dict], stats: dict) -> str:
    per_case_detail(rows)
    n_unintended = sum(1 for r in rows if not r["intended"])
    lines = [table(rows) if rows else "(no disagreements)", "",
             f"{stats['datasets']} datasets, {stats['fields']} fields compared; {len(rows)} disagreements "
             f"({n_unintended} not intended)",
             f"planning time (all presets): autoseg {stats['autoseg_seconds']:.2f} s, "
             f"nnU-Net {stats['nnunet_seconds']:.2f} s"]
    reasons = sorted({r["intended"] for r in rows if r["intended"]})
    lines += [f"intended: {why}" for why in reasons]
    return "\n".join(lines)

