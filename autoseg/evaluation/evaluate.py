"""Evaluate a folder of predictions against reference label maps: per-case and mean Dice and IoU per label."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..io.images import SUPPORTED_ENDINGS, read_label
from ..utils import AutosegError, atomic_write_bytes, format_table, load_json, save_json
from .metrics import dice_iou, mean_std


def _files_by_case(folder: Path, ending: str | None) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        for e in ([ending] if ending else SUPPORTED_ENDINGS):
            if p.name.endswith(e) and not p.name.startswith("."):
                out[p.name[: -len(e)]] = p
                break
    return out


def evaluate_cases(pairs: list[tuple[str, Path, Path]], labels: dict[str, int]) -> dict:
    fg = {n: v for n, v in labels.items() if v != 0}
    per_case = []
    for case, pred_path, ref_path in pairs:
        pred, pg = read_label(pred_path, case)
        ref, rg = read_label(ref_path, case)
        if pred.shape != ref.shape:
            raise AutosegError(f"case {case}: prediction {pred_path} has shape {pred.shape}, reference {ref_path} "
                               f"has {ref.shape}")
        row: dict = {"case": case}
        for name, v in fg.items():
            d, j = dice_iou(pred, ref, v)
            row[name] = {"dice": d, "iou": j}
        per_case.append(row)
    mean = {name: {"dice": mean_std([r[name]["dice"] for r in per_case]),
                   "iou": mean_std([r[name]["iou"] for r in per_case])} for name in fg}
    fg_dice = [np.mean([r[n]["dice"] for n in fg if r[n]["dice"] is not None]) for r in per_case
               if any(r[n]["dice"] is not None for n in fg)]
    return {"labels": labels, "num_cases": len(per_case), "mean": mean,
            "foreground_mean_dice": float(np.mean(fg_dice)) if fg_dice else None, "per_case": per_case}


def _csv_text(summary: dict) -> str:
    names = [n for n, v in summary["labels"].items() if v != 0]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case"] + [f"{n}_{m}" for n in names for m in ("dice", "iou")])
    for r in summary["per_case"]:
        w.writerow([r["case"]] + ["" if r[n][m] is None else f"{r[n][m]:.6f}" for n in names for m in ("dice", "iou")])
    return buf.getvalue()


def summary_table(summary: dict) -> str:
    rows = []
    for name, m in summary["mean"].items():
        d, j = m["dice"], m["iou"]
        rows.append([name, "-" if d["mean"] is None else f"{d['mean']:.4f} ± {d['std']:.4f}",
                     "-" if j["mean"] is None else f"{j['mean']:.4f}", d["n"]])
    return format_table(["label", "Dice (mean ± sd)", "IoU", "n"], rows)


def write_summary(summary: dict, out_dir: Path, stem: str = "summary") -> None:
    """``<stem>.json`` and ``<stem>.csv`` (one row per case) in ``out_dir``."""
    save_json(summary, out_dir / f"{stem}.json")
    text = _csv_text(summary)
    atomic_write_bytes(out_dir / f"{stem}.csv", lambda tmp: Path(tmp).write_text(text))


def evaluate_folder(pred_dir: str | Path, labels_dir: str | Path, dataset_json: str | Path | None = None,
                    out_dir: str | Path | None = None) -> dict:
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
    labels = {str(k): int(v) for k, v in dj["labels"].items()}
    ending = dj.get("file_ending")
    preds, refs = _files_by_case(pred_dir, ending), _files_by_case(labels_dir, ending)
    missing = sorted(set(refs) - set(preds))
    if not preds:
        raise AutosegError(f"{pred_dir}: no predictions ending in {ending}")
    unmatched = sorted(set(preds) - set(refs))
    if unmatched:
        raise AutosegError(f"{labels_dir}: no reference label for predicted case(s) {unmatched[:5]}")
    pairs = [(c, preds[c], refs[c]) for c in sorted(preds)]
    summary = evaluate_cases(pairs, labels)
    summary["cases_without_prediction"] = missing
    write_summary(summary, Path(out_dir) if out_dir else pred_dir)
    return summary
