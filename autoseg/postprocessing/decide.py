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
from ..evaluation.metrics import dice_iou
from ..io.dataset import DatasetInfo, load_dataset
from ..io.images import read_label
from ..io.workspace import Workspace
from ..planner.plans import Plans
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


def _read_pairs(pairs: list[tuple]):
    for case, pred_path, ref_path in pairs:
        yield read_label(pred_path, case)[0], read_label(ref_path, case)[0]


def lcc_rows(items, labels: dict[str, int]) -> list[list]:
    """[label, Dice, Dice with LCC, apply] over (prediction, reference) label maps; the step is applied only where
    the mean Dice of that label improves. Regions are judged by the values they write; voxels the reference marks
    ignore are not scored."""
    fg = {n: v for n, v in labels.items() if isinstance(v, int) and v != 0 and n != "ignore"}
    ignore = labels.get("ignore")
    before: dict[str, list] = {n: [] for n in fg}
    after: dict[str, list] = {n: [] for n in fg}
    for pred, ref in items:
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


def postprocessing_record(rows: list[list], labels: dict[str, int], num_cases: int) -> dict:
    return {"lcc_labels": [labels[r[0]] for r in rows if r[3] == "yes"], "num_cases": num_cases,
            "dice_before": {r[0]: r[1] for r in rows}, "dice_after": {r[0]: r[2] for r in rows}}


def postprocessed_dice(pp: dict) -> float:
    """Mean foreground Dice after the postprocessing decision (each label with or without its LCC step)."""
    return float(np.mean([max(pp["dice_before"][n], pp["dice_after"][n]) for n in pp["dice_before"]]))


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
        from .ensemble import find_best

        try:
            print(f"{ws.best} came from find-best: ranking configurations and their ensembles again", flush=True)
            return find_best(ws, list(dict.fromkeys(m for n in earlier.get("dice_table", {}) for m in
                                                     earlier["dice_table"][n].get("members", []))) or None)
        except AutosegError as e:
            print(f"note: find-best could not be redone ({e}); {ws.best} now holds the best single configuration",
                  flush=True)
    return write_best(ws, [best], scores[best], table, decisions[best], "crossval")


BEST_SCHEMA = 2


def write_best(ws: Workspace, members: list[str], score: float, table: dict, postprocessing: dict,
               method: str) -> dict:
    """The one writer of ``best.json``: the winner (one configuration, or an ensemble whose probabilities are
    averaged), its cross-validation Dice after postprocessing, every candidate's Dice table and the postprocessing
    to apply. ``configuration`` is kept for a single winner (older readers)."""
    record = {"schema_version": BEST_SCHEMA, "kind": "ensemble" if len(members) > 1 else "configuration",
              "name": "+".join(members), "configurations": list(members), "cv_mean_foreground_dice": score,
              "candidates": {n: t["mean"] for n, t in table.items()}, "dice_table": table,
              "postprocessing": postprocessing, "method": method}
    if len(members) == 1:
        record["configuration"] = members[0]
    save_json(record, ws.best)
    return record


def read_best(ws: Workspace) -> dict | None:
    """best.json with ``configurations`` (its members) filled in for records written before ensembles; None when
    there is none."""
    if not ws.best.is_file():
        return None
    d = load_json(ws.best)
    members = d.get("configurations") if isinstance(d, dict) else None
    if members is None and isinstance(d, dict) and isinstance(d.get("configuration"), str):
        members = [d["configuration"]]
    if not (isinstance(members, list) and members and all(isinstance(m, str) for m in members)):
        raise AutosegError(f"{ws.best}: no \"configurations\" list; run `autoseg find-best {ws.root}` again")
    d["configurations"] = members
    return d
