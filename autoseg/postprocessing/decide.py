"""Cross-validation of a configuration: the folds' validation predictions scored together (``cv_summary.json``),
the decision whether keeping the largest connected component helps, per label (``postprocessing.json``), and the
best configuration of the run (``best.json``).

For each foreground label, the validation predictions of all folds are re-scored with that label reduced to its
largest component; the step is kept only if the mean Dice of that label improves.
"""
from __future__ import annotations

import numpy as np

from ..evaluation.evaluate import CaseTable, evaluate_cases, write_summary
from ..evaluation.metrics import dice_iou
from ..io.dataset import DatasetInfo, load_dataset
from ..io.images import read_label
from ..planner.plans import Plans
from ..utils import AutosegError, format_table, load_json, save_json
from ..workspace import Workspace
from .components import keep_largest_component


def fold_count(ws: Workspace) -> int:
    if not ws.splits.is_file():
        raise AutosegError(f"{ws.splits}: no splits, so no cross-validation (the run was planned with too few "
                           "patients for 5 folds)")
    splits = load_json(ws.splits)
    if not isinstance(splits, list):
        raise AutosegError(f"{ws.splits}: expected a list of folds; re-run `autoseg plan`")
    return len(splits)


def missing_folds(ws: Workspace, config: str, n_folds: int) -> list[int]:
    """Folds whose final validation summary is not written yet."""
    return [k for k in range(n_folds) if not (ws.fold_dir(config, k) / "validation" / "summary.json").is_file()]


def maybe_decide_postprocessing(ws: Workspace, config: str, plans: Plans | None = None,
                                ds: DatasetInfo | None = None) -> dict | None:
    """Cross-validate once every fold has validated; None (nothing written) before that."""
    if not ws.splits.is_file():
        return None
    n_folds = fold_count(ws)
    if missing_folds(ws, config, n_folds):
        return None
    return decide_postprocessing(ws, config, n_folds, plans, ds)


def validation_pairs(ws: Workspace, config: str, n_folds: int, ds: DatasetInfo) -> list[tuple]:
    """(case, prediction, reference) for every fold's validation predictions; hidden files (a killed write's
    temporary file) are not predictions."""
    pairs = []
    for k in range(n_folds):
        vdir = ws.fold_dir(config, k) / "validation"
        for p in sorted(vdir.glob("*" + ds.file_ending)):
            if p.name.startswith("."):
                continue
            case = p.name[: -len(ds.file_ending)]
            pairs.append((case, p, ds.label_file(case)))
    return pairs


def _lcc_rows(pairs: list[tuple], labels: dict[str, int]) -> list[list]:
    # regions are judged by the values they write; voxels the reference marks ignore are not scored
    fg = {n: v for n, v in labels.items() if isinstance(v, int) and v != 0 and n != "ignore"}
    ignore = labels.get("ignore")
    before: dict[str, list] = {n: [] for n in fg}
    after: dict[str, list] = {n: [] for n in fg}
    for case, pred_path, ref_path in pairs:
        pred, _ = read_label(pred_path, case)
        ref, _ = read_label(ref_path, case)
        unlabelled = ref == ignore if ignore is not None else np.zeros(ref.shape, bool)
        for n, v in fg.items():
            kept = np.where(unlabelled, ref, keep_largest_component(pred, v))
            before[n].append(dice_iou(np.where(unlabelled, ref, pred), ref, v)[0])
            after[n].append(dice_iou(kept, ref, v)[0])
    rows = []
    for n in fg:
        b = float(np.mean([x for x in before[n] if x is not None] or [0]))
        a = float(np.mean([x for x in after[n] if x is not None] or [0]))
        rows.append([n, b, a, "yes" if a > b else "no"])
    return rows


def decide_postprocessing(ws: Workspace, config: str, n_folds: int, plans: Plans | None = None,
                          ds: DatasetInfo | None = None) -> dict:
    plans = plans or Plans.load(ws.plans)
    ds = ds or load_dataset(plans.dataset_dir)
    pairs = validation_pairs(ws, config, n_folds, ds)
    cv = evaluate_cases(pairs, plans.labels, CaseTable(ds.groups, ds.phases))
    write_summary(cv, ws.config_dir(config), stem="cv_summary")
    rows = _lcc_rows(pairs, plans.labels)
    result = {"lcc_labels": [plans.labels[r[0]] for r in rows if r[3] == "yes"], "num_cases": len(pairs),
              "dice_before": {r[0]: r[1] for r in rows}, "dice_after": {r[0]: r[2] for r in rows}}
    save_json(result, ws.postprocessing(config))
    print(f"cross-validation of {config} ({len(pairs)} cases, {n_folds} folds): largest-component postprocessing")
    print(format_table(["label", "Dice", "Dice with LCC", "apply"], rows), flush=True)
    choose_best_configuration(ws, plans)
    return result


def choose_best_configuration(ws: Workspace, plans: Plans | None = None) -> dict | None:
    """Among the configurations with a complete cross-validation, the one with the best mean foreground Dice
    (after its own postprocessing decision) goes to ``run/best.json``; ``predict`` uses it when no -c is given."""
    plans = plans or Plans.load(ws.plans)
    scores = {}
    for c in plans.configurations:
        pp = ws.postprocessing(c)
        if pp.is_file():
            d = load_json(pp)
            scores[c] = float(np.mean([max(d["dice_before"][n], d["dice_after"][n]) for n in d["dice_before"]]))
    if not scores:
        return None
    best = max(scores, key=scores.get)
    result = {"configuration": best, "cv_mean_foreground_dice": scores[best], "candidates": scores}
    save_json(result, ws.best)
    return result
