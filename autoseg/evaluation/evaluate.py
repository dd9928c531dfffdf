"""Evaluate predictions against reference label maps.

Per case and label: Dice, IoU, HD95 and ASSD (mm) and the volume of each structure in prediction and reference.
Means (with sd and the number of cases behind them) per label, overall and per phase (ED/ES) where phases are known;
cardiac clinical indices per patient with their agreement. Used by ``autoseg evaluate``, by the validation at the end
of training and by the cross-validation summary, so all three report the same numbers.

Domain metrics, asked for by ``autoseg evaluate`` (see ``DomainOptions``): fetal head circumference against a
reference column of the case table (HC18; automatic when the table has an ``hc_mm`` column), and vessel metrics
(sensitivity, specificity, accuracy, Dice, ROC AUC from saved probabilities) for a label naming thin structures.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.faults import fault_point
from ..core.files import atomic_write_bytes, refuse_overwriting_inputs
from ..core.jsonio import load_json, save_json
from ..core.locks import folder_lock
from ..core.process import pool_map
from ..core.progress import format_table
from ..io.dataset import read_csv_rows
from ..io.images import SUPPORTED_ENDINGS, Geometry, ending_of, read_label
from ..io.labels import IGNORE_NAME, LabelSpec
from .clinical import agreement, short_axis_indices, simpson_biplane_ml, volume_ml
from .head_circumference import HC_HEADERS, case_hc, hc_rows, hc_section, parse_reference, read_reference
from .metrics import dice_iou_masks, mean_std
from .surface import surface_metrics
from .vessels import VESSEL_HEADERS, case_vessels, probabilities_path, read_probability, vessel_rows, vessel_section

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


@dataclass(frozen=True)
class DomainOptions:
    """Which domain metrics to add. ``hc_values``: label values whose union is the head (None: no HC), with the
    reference HC (mm) per case and where it came from; ``vessel_value``: the thin-structure label (a value, or a
    region's values), ``vessel_channel`` its probability channel in ``<case>.npz``."""

    hc_values: tuple[int, ...] | None = None
    hc_reference: dict[str, float] = field(default_factory=dict)
    hc_source: str = ""
    hc_label: str = ""
    hc_inset_px: float = 0.0
    vessel_label: str | None = None
    vessel_value: int | tuple[int, ...] | None = None
    vessel_channel: int | str | None = None

    def for_worker(self) -> "DomainOptions":
        """The same without the reference table (the workers do not need it)."""
        return DomainOptions(self.hc_values, {}, "", "", self.hc_inset_px, self.vessel_label, self.vessel_value,
                             self.vessel_channel)


def _domain_metrics(case: str, pred: np.ndarray, ref: np.ndarray, spacing, valid: np.ndarray, pred_path: Path,
                    d: DomainOptions) -> dict:
    out: dict = {}
    if d.hc_values is not None:
        out["hc"] = case_hc(case, pred, ref, spacing, list(d.hc_values), d.hc_inset_px)
    if d.vessel_value is not None:
        npz = probabilities_path(pred_path, ending_of(pred_path))
        prob = read_probability(npz, case, d.vessel_channel, pred.shape) if npz.is_file() else None
        value = list(d.vessel_value) if isinstance(d.vessel_value, tuple) else d.vessel_value
        out["vessel"] = case_vessels(pred, ref, valid, value, prob)
    return out


def _case_metrics(args) -> tuple[dict, dict]:
    """(the case's row, its domain metrics): kept apart, as a label may be called anything."""
    case, pred_path, ref_path, labels, domain = args
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
    extra = _domain_metrics(case, pred, ref, rg.spacing, valid, pred_path, domain) if domain is not None else {}
    return row, extra


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
                   table: CaseTable | None = None, num_workers: int | None = None,
                   domain: DomainOptions | None = None) -> dict:
    table = table or CaseTable()
    names = evaluated_names(labels)
    worker_domain = domain.for_worker() if domain else None
    jobs = [(c, p, r, labels, worker_domain) for c, p, r in pairs]
    workers = num_workers if num_workers is not None else min(os.cpu_count() or 1, 4)
    results = pool_map(_case_metrics, jobs, workers if len(jobs) > 4 else 1, desc="evaluate")
    per_case = [row for row, _ in results]
    extra = {row["case"]: x for row, x in results}
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
    if domain is not None and domain.hc_values is not None:
        summary["head_circumference"] = hc_section({c: x["hc"] for c, x in extra.items()},
                                                   domain.hc_reference, domain.hc_source, domain.hc_label,
                                                   domain.hc_inset_px)
    if domain is not None and domain.vessel_value is not None:
        summary["vessels"] = vessel_section({c: x["vessel"] for c, x in extra.items()}, domain.vessel_label or "")
    summary["per_case"] = per_case
    return summary


_DEFINITION = ("Dice/IoU: both structures empty -> null (left out of means). HD95: larger of the two directed 95th "
               "percentiles of boundary-to-boundary distances (mm); ASSD: mean of both directed distance sets (mm); "
               "boundary = voxels with a face-neighbour outside. One side empty -> distances = image diagonal (mm); "
               "both empty -> null. 'n' = cases behind each mean.")


HC_COLUMNS = ("hc_pred_mm", "hc_label_mm", "hc_ref_mm", "abs_diff_mm")
VESSEL_COLUMNS = ("sensitivity", "specificity", "accuracy", "dice", "auc")


def _domain_columns(summary: dict) -> tuple[list[str], dict[str, list]]:
    """Extra summary.csv columns for the domain metrics: (header, values per case)."""
    header: list[str] = []
    values: dict[str, list] = {r["case"]: [] for r in summary["per_case"]}
    for section, keys, prefix in (("head_circumference", HC_COLUMNS, "hc_"), ("vessels", VESSEL_COLUMNS, "vessel_")):
        if section not in summary:
            continue
        header += [k if k.startswith(prefix) else prefix + k for k in keys]
        by_case = {r["case"]: r for r in summary[section]["per_case"]}
        for c, v in values.items():
            v += [by_case.get(c, {}).get(k) for k in keys]
    return header, values


def _csv_text(summary: dict) -> str:
    names = evaluated_names(summary["labels"])
    extra, extra_values = _domain_columns(summary)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "patient", "phase"] + [f"{n}_{m}" for n in names for m in METRICS] + extra)
    for r in summary["per_case"]:
        w.writerow([r["case"], r.get("patient", ""), r.get("phase", "")]
                   + ["" if r[n][m] is None else f"{r[n][m]:.6f}" for n in names for m in METRICS]
                   + ["" if v is None else f"{v:.6f}" for v in extra_values[r["case"]]])
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
    return text + domain_tables(summary)


def domain_tables(summary: dict) -> str:
    """The head circumference and vessel tables of the terminal summary (empty when neither was asked for)."""
    text = ""
    hc = summary.get("head_circumference")
    if hc:
        text += (f"\n\nhead circumference of {hc['label']} vs {hc['reference']} (ellipse fit, Ramanujan"
                 + (f"; {hc['inset_px']:g} px inset" if hc["inset_px"] else "") + ")\n")
        text += format_table(HC_HEADERS, hc_rows(hc))
        off = hc["label_edge_offset_px"]
        if off["n"]:
            text += (f"\nreference labels' edge lies {off['mean']:+.2f} ± {off['std']:.2f} px (radially) outside the "
                     f"reference ellipse{' after the inset' if hc['inset_px'] else ''}")
            if not hc["inset_px"] and abs(off["mean"]) > max(0.25, 3 * off["std"]):  # a drawing artefact
                text += f"; --hc-inset-px {off['mean']:.1f} measures on the reference ellipse"
        if hc["not_measured"]:
            text += f"\nno head found in the prediction of {len(hc['not_measured'])} case(s): {hc['not_measured'][:5]}"
    v = summary.get("vessels")
    if v:
        text += f"\n\nvessel metrics of label {v['label']}\n" + format_table(VESSEL_HEADERS, vessel_rows(v))
        if v["cases_without_probabilities"]:
            text += (f"\nno AUC for {len(v['cases_without_probabilities'])} case(s) without <case>.npz "
                     "(predict with --save-probabilities)")
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


def _label_arg(flag: str, spec: str, labels: dict, where) -> tuple[str, int | list[int]]:
    """A label named on the command line by name or value: (name, value); anything else fails in one line."""
    named = {n: v for n, v in labels.items() if v != 0 and n != IGNORE_NAME}
    if spec in named:
        return spec, named[spec]
    for n, v in named.items():
        if not isinstance(v, list) and spec.strip().lstrip("+").isdigit() and int(spec) == v:
            return n, v
    known = ", ".join(f"{n} ({v})" for n, v in named.items())
    raise AutosegError(f"{flag} {spec}: not a foreground label of {where} (labels: {known})")


def _csv_columns(path: Path) -> list[str]:
    rows = read_csv_rows(path)
    return list(rows[0]) if rows else []


def domain_options(labels: dict, dataset_json, cases_csv: Path | None, cases: list[str],
                   hc_reference: str | None = None, hc_label: str | None = None, hc_inset_px: float = 0.0,
                   vessel_label: str | None = None) -> DomainOptions | None:
    """The domain metrics asked for, checked before any case is read. HC: ``hc_reference`` is COLUMN (of the case
    table), CSV:COLUMN or none; when not given, the case table's ``hc_mm`` column, if it has one. The head is
    ``hc_label`` or, by default, all foreground labels together."""
    if not (np.isfinite(hc_inset_px) and hc_inset_px >= 0):
        raise AutosegError(f"--hc-inset-px {hc_inset_px}: give a distance in pixels >= 0")
    ref = None
    if hc_reference is not None:
        ref = parse_reference(hc_reference, cases_csv)
    elif cases_csv is not None and "hc_mm" in _csv_columns(cases_csv):
        ref = (cases_csv, "hc_mm")
    if ref is None and hc_label is not None:
        raise AutosegError(f"--hc-label {hc_label}: no reference head circumference; name it with --hc-reference "
                           "CSV:COLUMN")
    opts: dict = {}
    if ref is not None:
        if hc_label is not None:
            name, v = _label_arg("--hc-label", hc_label, labels, dataset_json)
            values = v if isinstance(v, list) else [v]
        else:
            name = "all foreground labels"
            values = sorted({x for n in evaluated_names(labels)
                             for x in (labels[n] if isinstance(labels[n], list) else [labels[n]])})
        opts.update(hc_values=tuple(values), hc_reference=read_reference(ref[0], ref[1], cases),
                    hc_source=f"{ref[0]}:{ref[1]}", hc_label=name, hc_inset_px=float(hc_inset_px))
    if vessel_label is not None:
        name, v = _label_arg("--vessel-label", vessel_label, labels, dataset_json)
        opts.update(vessel_label=name, vessel_value=tuple(v) if isinstance(v, list) else v,
                    vessel_channel=name if isinstance(v, list) else v)
    return DomainOptions(**opts) if opts else None


def evaluate_folder(pred_dir: str | Path, labels_dir: str | Path, dataset_json: str | Path | None = None,
                    out_dir: str | Path | None = None, cases_csv: str | Path | None = None,
                    hc_reference: str | None = None, hc_label: str | None = None, hc_inset_px: float = 0.0,
                    vessel_label: str | None = None) -> dict:
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
    domain = domain_options(labels, dataset_json, Path(cases_csv) if cases_csv is not None else None, sorted(preds),
                            hc_reference, hc_label, hc_inset_px, vessel_label)
    out = Path(out_dir) if out_dir else pred_dir
    refuse_overwriting_inputs([out / "summary.json", out / "summary.csv"],
                              [p for _, a, b in pairs for p in (a, b)] + [Path(dataset_json)])
    with folder_lock(out, "evaluate"):
        summary = evaluate_cases(pairs, labels, table, domain=domain)
        summary["cases_without_prediction"] = sorted(set(refs) - set(preds))
        fault_point("evaluate_before_summary")
        write_summary(summary, out)
    return summary
