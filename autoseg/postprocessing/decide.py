"""Cross-validation of a configuration: the folds' validation predictions scored together (``cv_summary.json``),
the decision whether keeping the largest connected component helps, per label (``postprocessing.json``), and the
best configuration of the run (``best.json``).

For each foreground label, the validation predictions of all folds are re-scored with that label reduced to its
largest component; the step is kept only if the mean Dice of that label improves.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import AutosegError
from ..core.jsonio import load_json, save_json
from ..core.progress import format_table
from ..evaluation.evaluate import CaseTable, evaluate_cases, write_summary
from ..io.dataset import DatasetInfo, load_dataset
from ..io.images import read_label
from ..io.workspace import Workspace
from ..planner.plans import Plans
from .best import fold_count, lcc_rows, missing_folds, postprocessed_dice, postprocessing_record, write_best
from .ranking import rank_configurations


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


def _read_pairs(pairs: list[tuple]):
    for case, pred_path, ref_path in pairs:
        yield read_label(pred_path, case)[0], read_label(ref_path, case)[0]


def decide_postprocessing(ws: Workspace, config: str, n_folds: int, plans: Plans | None = None,
                          ds: DatasetInfo | None = None) -> dict:
    plans = plans or Plans.load(ws.plans)
    ds = ds or load_dataset(plans.dataset_dir)
    pairs = validation_pairs(ws, config, n_folds, ds)
    cv = evaluate_cases(pairs, plans.labels, CaseTable(ds.groups, ds.phases))
    write_summary(cv, ws.config_dir(config), stem="cv_summary")
    rows = lcc_rows(_read_pairs(pairs), plans.labels)
    result = postprocessing_record(rows, plans.labels, len(pairs))
    save_json(result, ws.postprocessing(config))
    print(f"cross-validation of {config} ({len(pairs)} cases, {n_folds} folds): largest-component postprocessing")
    print(format_table(["label", "Dice", "Dice with LCC", "apply"], rows), flush=True)
    choose_best_configuration(ws, plans)
    return result


def choose_best_configuration(ws: Workspace, plans: Plans | None = None) -> dict | None:
    """Among the configurations with a complete cross-validation, the one with the best mean foreground Dice
    (after its own postprocessing decision) goes to ``run/best.json``; ``predict`` uses it when no -c is given.
    Ensembles are ranked by `autoseg find-best`, which writes the same record."""
    plans = plans or Plans.load(ws.plans)
    decisions = {c: load_json(ws.postprocessing(c)) for c in plans.configurations if ws.postprocessing(c).is_file()}
    if not decisions:
        return None
    scores = {c: postprocessed_dice(d) for c, d in decisions.items()}
    best = max(scores, key=scores.get)
    table = {c: {"members": [c], "dice": d["dice_before"], "mean": float(np.mean(list(d["dice_before"].values())))}
             for c, d in decisions.items()}
    earlier = load_json(ws.best) if ws.best.is_file() else {}
    if isinstance(earlier, dict) and earlier.get("method") == "find-best":
        # a ranking that included ensembles is redone with this fold's new results, not replaced by a narrower one
        try:
            print(f"{ws.best} came from find-best: ranking configurations and their ensembles again", flush=True)
            return rank_configurations(ws, list(dict.fromkeys(m for n in earlier.get("dice_table", {}) for m in
                                                     earlier["dice_table"][n].get("members", []))) or None)
        except AutosegError as e:
            print(f"note: find-best could not be redone ({e}); {ws.best} now holds the best single configuration",
                  flush=True)
    return write_best(ws, [best], scores[best], table, decisions[best], "crossval")
