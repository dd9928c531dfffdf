"""Evaluate predictions against reference label maps.

Per case and label: Dice, IoU, HD95 and ASSD (mm) and the volume of each structure in prediction and reference.
Means (with sd and the number of cases behind them) per label, overall and per phase (ED/ES) where phases are known;
cardiac clinical indices per patient with their agreement. Used by ``autoseg evaluate``, by the validation at the end
of training and by the cross-validation summary, so all three report the same numbers.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..faults import fault_point
from ..io.dataset import read_csv_rows
from ..io.images import SUPPORTED_ENDINGS, Geometry, read_label
from ..labels import IGNORE_NAME, LabelSpec
from ..utils import (
    AutosegError,
    atomic_write_bytes,
    folder_lock,
    format_table,
    load_json,
    pool_map,
    refuse_overwriting_inputs,
    save_json,
)
from .clinical import agreement, short_axis_indices, simpson_biplane_ml, volume_ml
from .metrics import dice_iou_masks, mean_std
from .surface import surface_metrics

METRICS = ("dice", "iou", "hd95_mm", "assd_mm")


@dataclass
class CaseTable:
    """Which patient, phase (ED/ES) and, for echo, view (2CH/4CH) each case is."""

    patient: dict[str, str] = field(default_factory=dict)
    phase: dict[str, str] = field(default_factory=dict)
    view: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_csv(path: str | Path) -> "CaseTable":
        path = Path(path)
        if not path.is_file():
            raise AutosegError(f"{path}: case table not found")
        t = CaseTable()
        rows = read_csv_rows(path)
        if not rows or "case" not in rows[0]:
            raise AutosegError(f"{path}: a case table needs a 'case' column (and patient, phase) and one row per "
                               "case")
        for row in rows:
            c = row["case"]
            for key, d in (("patient", t.patient), ("phase", t.phase), ("view", t.view)):
                if row.get(key):
                    d[c] = row[key].strip()
        return t

    @staticmethod
    def from_dataset_json(dj: dict) -> "CaseTable":
        return CaseTable({str(k): str(v) for k, v in (dj.get("groups") or {}).items()},
                         {str(k): str(v) for k, v in (dj.get("phases") or {}).items()},
                         {str(k): str(v) for k, v in (dj.get("views") or {}).items()})


def check_same_grid(case: str, pred_path: Path, pg: Geometry, ref_path: Path, rg: Geometry) -> None:
    """A prediction is compared voxel by voxel, so it must lie on the reference's grid (shape, spacing, origin,
    direction); otherwise a shifted prediction would score as if it were aligned."""
    what = None
    if tuple(pg.shape) != tuple(rg.shape) or pg.dimension != rg.dimension:
        what = f"shape {pg.shape} vs {rg.shape}"
    elif not np.allclose(pg.spacing, rg.spacing, rtol=1e-3):
        what = f"spacing {pg.spacing} vs {rg.spacing}"
    elif not np.allclose(pg.origin, rg.origin, atol=1e-3 * max(min(rg.spacing), 1e-3) + 1e-4):
        what = f"origin {pg.origin} vs {rg.origin}"
    elif not np.allclose(pg.direction, rg.direction, atol=1e-4):
        what = f"direction {pg.direction} vs {rg.direction}"
    if what:
        raise AutosegError(f"case {case}: prediction {pred_path} is not on the grid of the reference {ref_path} "
                           f"({what}); predict from the reference's image or resample the prediction first")


def _check_values(case: str, path: Path, arr: np.ndarray, labels: dict[str, int | list[int]]) -> None:
    declared = {x for v in labels.values() for x in (v if isinstance(v, list) else [v])}  # regions: their values
    undeclared = sorted(set(int(v) for v in np.unique(arr)) - declared)
    if undeclared:
        raise AutosegError(f"case {case}: {path} holds label values {undeclared} that dataset.json does not "
                           f"declare ({labels})")


def _case_metrics(args) -> dict:
    case, pred_path, ref_path, labels = args
    pred, pg = read_label(pred_path, case)
    ref, rg = read_label(ref_path, case)
    check_same_grid(case, pred_path, pg, ref_path, rg)
    _check_values(case, pred_path, pred, labels)
    _check_values(case, ref_path, ref, labels)
    row: dict = {"case": case}
    vols: dict = {}
    ignore = labels.get(IGNORE_NAME)
    valid = ref != ignore if ignore is not None else np.ones(ref.shape, bool)  # ignore-labelled: left out
    for name in evaluated_names(labels):
        v = labels[name]  # a value, or a region's list of values
        p, r = np.isin(pred, v) & valid, np.isin(ref, v) & valid
        d, j = dice_iou_masks(p, r)
        row[name] = {"dice": d, "iou": j, **{k: s for k, s in surface_metrics(p, r, rg.spacing).items()
                                              if k != "flag"}}
        if rg.dimension == 3:
            vols[name] = {"pred_ml": volume_ml(p, rg.spacing), "ref_ml": volume_ml(r, rg.spacing)}
        else:  # 2D: areas in mm^2, for Simpson's method
            sp2 = rg.spacing[1:]
            vols[name] = {"pred_area_mm2": float(p.sum() * np.prod(sp2)), "ref_area_mm2": float(r.sum() * np.prod(sp2))}
    row["volumes"] = vols
    return row


def evaluated_names(labels: dict) -> list[str]:
    """The labels (or regions) scored: all but the background and the ignore label."""
    return [n for n, v in labels.items() if v != 0 and n != IGNORE_NAME]


def _means(rows: list[dict], names: list[str]) -> dict:
    return {n: {m: mean_std([r[n][m] for r in rows]) for m in METRICS} for n in names}


def _clinical_short_axis(per_case: list[dict], table: CaseTable) -> dict | None:
    by_patient: dict[str, dict[str, dict]] = {}
    for r in per_case:
        ph, pat = table.phase.get(r["case"]), table.patient.get(r["case"])
        if ph in ("ED", "ES") and pat:
            by_patient.setdefault(pat, {})[ph] = r
    rows = []
    for pat in sorted(by_patient):
        d = by_patient[pat]
        if "ED" not in d or "ES" not in d:
            continue
        res = {"patient": pat, "ED_case": d["ED"]["case"], "ES_case": d["ES"]["case"]}
        for side in ("pred", "ref"):
            ed = {n: v[f"{side}_ml"] for n, v in d["ED"]["volumes"].items() if n in ("LV", "RV", "MYO")}
            es = {n: v[f"{side}_ml"] for n, v in d["ES"]["volumes"].items() if n in ("LV", "RV", "MYO")}
            res[side] = short_axis_indices(ed, es)
        rows.append(res)
    if not rows:
        return None
    keys = sorted({k for r in rows for k in r["ref"]})
    return {"method": "short-axis stack (voxel counting; myocardial mass at ED x 1.05 g/ml)",
            "per_patient": rows,
            "agreement": {k: agreement([r["pred"].get(k) for r in rows], [r["ref"].get(k) for r in rows])
                          for k in keys}}


def _clinical_echo(per_case: list[dict], table: CaseTable, paths: dict[str, dict[str, Path]],
                   lv_value: int) -> dict | None:
    """LV volumes by Simpson's biplane method from 2CH and 4CH masks at ED and ES (needs views in the table).
    The LV masks are read again here: the per-case pass keeps only numbers, not images."""
    groups: dict[str, dict[tuple[str, str], dict]] = {}
    for r in per_case:
        c = r["case"]
        ph, pat, view = table.phase.get(c), table.patient.get(c), table.view.get(c, "").upper()
        if ph in ("ED", "ES") and pat and view in ("2CH", "4CH"):
            groups.setdefault(pat, {})[(ph, view)] = r
    rows = []
    for pat in sorted(groups):
        g = groups[pat]
        if len(g) < 4:
            continue
        res = {"patient": pat}
        for side in ("pred", "ref"):
            vol = {}
            for ph in ("ED", "ES"):
                masks = []
                for view in ("2CH", "4CH"):
                    case = g[(ph, view)]["case"]
                    lab, geom = read_label(paths[case][side], case)
                    masks.append((lab[0] == lv_value, geom.spacing[1:]))
                vol[ph] = simpson_biplane_ml(masks[0][0], masks[0][1], masks[1][0], masks[1][1])
            res[side] = {"LV_EDV_ml": vol["ED"], "LV_ESV_ml": vol["ES"],
                         "LV_EF_pct": 100 * (vol["ED"] - vol["ES"]) / vol["ED"] if vol["ED"] > 0 else None}
        rows.append(res)
    if not rows:
        return None
    keys = ["LV_EDV_ml", "LV_ESV_ml", "LV_EF_pct"]
    return {"method": "Simpson's biplane method of discs (2CH + 4CH, 20 discs)", "per_patient": rows,
            "agreement": {k: agreement([r["pred"][k] for r in rows], [r["ref"][k] for r in rows]) for k in keys}}


def evaluate_cases(pairs: list[tuple[str, Path, Path]], labels: dict[str, int | list[int]],
                   table: CaseTable | None = None, num_workers: int | None = None) -> dict:
    table = table or CaseTable()
    names = evaluated_names(labels)
    jobs = [(c, p, r, labels) for c, p, r in pairs]
    workers = num_workers if num_workers is not None else min(os.cpu_count() or 1, 4)
    per_case = pool_map(_case_metrics, jobs, workers if len(jobs) > 4 else 1)
    for r in per_case:
        c = r["case"]
        if c in table.patient:
            r["patient"] = table.patient[c]
        if c in table.phase:
            r["phase"] = table.phase[c]
    fg_dice = [np.mean([r[n]["dice"] for n in names if r[n]["dice"] is not None]) for r in per_case
               if any(r[n]["dice"] is not None for n in names)]
    summary = {"labels": labels, "num_cases": len(per_case), "metrics_definition": _DEFINITION,
               "mean": _means(per_case, names),
               "foreground_mean_dice": float(np.mean(fg_dice)) if fg_dice else None}
    phases = sorted({r["phase"] for r in per_case if "phase" in r})
    if phases:
        summary["mean_by_phase"] = {ph: _means([r for r in per_case if r.get("phase") == ph], names)
                                    for ph in phases}
    volumetric = all("pred_ml" in v for r in per_case for v in r["volumes"].values())
    clinical = None
    if volumetric and {"LV", "RV", "MYO"} & set(names):
        clinical = _clinical_short_axis(per_case, table)
    elif not volumetric and "LV" in names and table.view:
        paths = {c: {"pred": p, "ref": ref} for c, p, ref in pairs}
        clinical = _clinical_echo(per_case, table, paths, labels["LV"])
    if clinical:
        summary["clinical"] = clinical
    summary["per_case"] = per_case
    return summary


_DEFINITION = ("Dice/IoU: both structures empty -> null (left out of means). HD95: larger of the two directed 95th "
               "percentiles of boundary-to-boundary distances (mm); ASSD: mean of both directed distance sets (mm); "
               "boundary = voxels with a face-neighbour outside. One side empty -> distances = image diagonal (mm); "
               "both empty -> null. 'n' = cases behind each mean.")


def _csv_text(summary: dict) -> str:
    names = evaluated_names(summary["labels"])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "patient", "phase"] + [f"{n}_{m}" for n in names for m in METRICS])
    for r in summary["per_case"]:
        w.writerow([r["case"], r.get("patient", ""), r.get("phase", "")]
                   + ["" if r[n][m] is None else f"{r[n][m]:.6f}" for n in names for m in METRICS])
    return buf.getvalue()


def _fmt(m: dict, digits: int = 4) -> str:
    return "-" if m["mean"] is None else f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"


def summary_table(summary: dict) -> str:
    rows = []
    groups = [("all", summary["mean"])] + list(summary.get("mean_by_phase", {}).items())
    for group, means in groups:
        for name, m in means.items():
            rows.append([name if group == "all" else f"{name} ({group})", _fmt(m["dice"]), _fmt(m["iou"]),
                         _fmt(m["hd95_mm"], 2), _fmt(m["assd_mm"], 2), m["dice"]["n"]])
    text = format_table(["label", "Dice", "IoU", "HD95 (mm)", "ASSD (mm)", "n"], rows)
    clin = summary.get("clinical")
    if clin:
        crow = [[k, a["n"], "-" if a["pearson_r"] is None else f"{a['pearson_r']:.3f}", f"{a['bias']:+.2f}",
                 f"[{a['loa_low']:+.2f}, {a['loa_high']:+.2f}]", f"{a['mae']:.2f}"]
                for k, a in clin["agreement"].items() if a["n"]]
        text += "\n\nclinical indices, prediction vs reference (" + clin["method"] + ")\n"
        text += format_table(["index", "patients", "r", "bias", "95% limits of agreement", "MAE"], crow)
    return text


def write_summary(summary: dict, out_dir: Path, stem: str = "summary") -> None:
    """``<stem>.json`` and ``<stem>.csv`` (one row per case) in ``out_dir``."""
    save_json(summary, out_dir / f"{stem}.json")
    text = _csv_text(summary)
    atomic_write_bytes(out_dir / f"{stem}.csv", lambda tmp: Path(tmp).write_text(text))


def _files_by_case(folder: Path, ending: str | None) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        for e in ([ending] if ending else SUPPORTED_ENDINGS):
            if p.name.endswith(e) and not p.name.startswith("."):
                out[p.name[: -len(e)]] = p
                break
    return out


def evaluate_folder(pred_dir: str | Path, labels_dir: str | Path, dataset_json: str | Path | None = None,
                    out_dir: str | Path | None = None, cases_csv: str | Path | None = None) -> dict:
    pred_dir, labels_dir = Path(pred_dir), Path(labels_dir)
    for d in (pred_dir, labels_dir):
        if not d.is_dir():
            raise AutosegError(f"{d}: folder not found")
    if dataset_json is None:
        for cand in (labels_dir.parent / "dataset.json", pred_dir / "dataset.json"):
            if cand.is_file():
                dataset_json = cand
                break
    if dataset_json is None:
        raise AutosegError(f"no dataset.json beside {labels_dir}; pass --dataset-json to name the labels")
    dj = load_json(dataset_json)
    if not isinstance(dj, dict):
        raise AutosegError(f"{dataset_json}: expected a JSON object with 'labels', got {type(dj).__name__}")
    labels = LabelSpec.parse(dj.get("labels"), dj.get("regions_class_order"), str(dataset_json)).to_json()
    table = CaseTable.from_dataset_json(dj)
    if cases_csv is None and (Path(dataset_json).parent / "cases.csv").is_file():
        cases_csv = Path(dataset_json).parent / "cases.csv"
    if cases_csv is not None:
        t = CaseTable.from_csv(cases_csv)
        table = CaseTable({**table.patient, **t.patient}, {**table.phase, **t.phase}, {**table.view, **t.view})
    ending = dj.get("file_ending")
    preds, refs = _files_by_case(pred_dir, ending), _files_by_case(labels_dir, ending)
    if not preds:
        raise AutosegError(f"{pred_dir}: no predictions ending in {ending}")
    unmatched = sorted(set(preds) - set(refs))
    if unmatched:
        raise AutosegError(f"{labels_dir}: no reference label for predicted case(s) {unmatched[:5]}")
    pairs = [(c, preds[c], refs[c]) for c in sorted(preds)]
    out = Path(out_dir) if out_dir else pred_dir
    refuse_overwriting_inputs([out / "summary.json", out / "summary.csv"],
                              [p for _, a, b in pairs for p in (a, b)] + [Path(dataset_json)])
    with folder_lock(out, "evaluate"):
        summary = evaluate_cases(pairs, labels, table)
        summary["cases_without_prediction"] = sorted(set(refs) - set(preds))
        fault_point("evaluate_before_summary")
        write_summary(summary, out)
    return summary
