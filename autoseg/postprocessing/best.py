"""What both deciders of a run share (``decide.py`` for one configuration, ``ranking.py`` for configurations and
their pairs): whether the cross-validation is complete, the per-label scores of the largest-component step, and
``best.json``, the run's chosen configuration or ensemble, which ``predict`` and ``export`` read.

Kept below the deciders so that neither imports the other's module back (``decide`` calls ``ranking`` when a
ranking that included ensembles must be redone).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import AutosegError
from ..core.jsonio import load_json, save_json
from ..evaluation.metrics import dice_iou
from ..io.workspace import Workspace
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
