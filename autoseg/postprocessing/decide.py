"""Decide from cross-validation whether keeping the largest connected component helps, per label.

Runs once every fold of a configuration has validated. For each foreground label, the validation predictions of
all folds are re-scored with that label reduced to its largest component; the step is kept only if the mean Dice
of that label improves. The decision and the figures behind it go to ``postprocessing.json``.
"""
from __future__ import annotations

import json

import numpy as np

from ..evaluation.evaluate import CaseTable, evaluate_cases, write_summary
from ..evaluation.metrics import dice_iou
from ..io.dataset import load_dataset
from ..io.images import read_label
from ..planner.plans import Plans
from ..utils import format_table, save_json
from ..workspace import Workspace
from .components import keep_largest_component


def maybe_decide_postprocessing(ws: Workspace, config: str) -> dict | None:
    if not ws.splits.is_file():
        return None
    n_folds = len(json.loads(ws.splits.read_text()))
    summaries = [ws.fold_dir(config, k) / "validation" / "summary.json" for k in range(n_folds)]
    if not all(p.is_file() for p in summaries):
        return None
    return decide_postprocessing(ws, config, n_folds)


def decide_postprocessing(ws: Workspace, config: str, n_folds: int) -> dict:
    plans = Plans.load(ws.plans)
    ds = load_dataset(plans.dataset_dir)
    pairs = []
    for k in range(n_folds):
        vdir = ws.fold_dir(config, k) / "validation"
        for p in sorted(vdir.glob("*" + ds.file_ending)):
            case = p.name[: -len(ds.file_ending)]
            pairs.append((case, p, ds.label_file(case)))
    cv = evaluate_cases(pairs, plans.labels, CaseTable(ds.groups, ds.phases))
    write_summary(cv, ws.config_dir(config), stem="cv_summary")
    fg = {n: v for n, v in plans.labels.items() if v != 0}
    before = {n: [] for n in fg}
    after = {n: [] for n in fg}
    for case, pred_path, ref_path in pairs:
        pred, _ = read_label(pred_path, case)
        ref, _ = read_label(ref_path, case)
        for n, v in fg.items():
            before[n].append(dice_iou(pred, ref, v)[0])
            after[n].append(dice_iou(keep_largest_component(pred, v), ref, v)[0])
    decision, rows = [], []
    for n, v in fg.items():
        b = float(np.mean([x for x in before[n] if x is not None] or [0]))
        a = float(np.mean([x for x in after[n] if x is not None] or [0]))
        keep = a > b
        if keep:
            decision.append(v)
        rows.append([n, b, a, "yes" if keep else "no"])
    result = {"lcc_labels": decision, "num_cases": len(pairs),
              "dice_before": {r[0]: r[1] for r in rows}, "dice_after": {r[0]: r[2] for r in rows}}
    save_json(result, ws.postprocessing(config))
    print(f"cross-validation of {config} ({len(pairs)} cases, {n_folds} folds): largest-component postprocessing")
    print(format_table(["label", "Dice", "Dice with LCC", "apply"], rows), flush=True)
    choose_best_configuration(ws)
    return result


def choose_best_configuration(ws: Workspace) -> dict | None:
    """Among the configurations with a complete cross-validation, the one with the best mean foreground Dice
    (after its own postprocessing decision) goes to ``run/best.json``; ``predict`` uses it when no -c is given."""
    plans = Plans.load(ws.plans)
    scores = {}
    for c in plans.configurations:
        pp = ws.postprocessing(c)
        if pp.is_file():
            d = json.loads(pp.read_text())
            scores[c] = float(np.mean([max(d["dice_before"][n], d["dice_after"][n]) for n in d["dice_before"]]))
    if not scores:
        return None
    best = max(scores, key=scores.get)
    result = {"configuration": best, "cv_mean_foreground_dice": scores[best], "candidates": scores}
    save_json(result, ws.root / "best.json")
    return result
