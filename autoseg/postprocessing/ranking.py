"""``autoseg find-best``: every trained configuration and every pair of them (the mean of the two configurations'
validation probabilities, per case, on the image's own grid) ranked by cross-validation mean foreground Dice; the
winner's largest-component postprocessing is decided as for one configuration and everything goes to best.json.

The probabilities are the ``validation/<case>.npz`` files written when training with
``--save-validation-probabilities``; each case is held out by exactly one fold, so a pair's prediction of a case
averages the two configurations' networks that never saw it.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.jsonio import load_json
from ..core.progress import format_table
from ..evaluation.metrics import dice_iou
from ..io.dataset import DatasetInfo, load_dataset
from ..io.images import read_label
from ..io.workspace import Workspace
from ..planner.plans import Plans
from .best import fold_count, lcc_rows, missing_folds, postprocessed_dice, postprocessing_record, write_best

FLAG = "--save-validation-probabilities"


def held_out_cases(ws: Workspace) -> dict[str, int]:
    """{case: the fold that holds it out}, from splits.json."""
    fold_count(ws)
    return {c: k for k, s in enumerate(load_json(ws.splits)) for c in s["val"]}


def validation_probabilities_path(ws: Workspace, config: str, fold: int, case: str) -> Path:
    return ws.fold_dir(config, fold) / "validation" / f"{case}.npz"


def check_configuration(ws: Workspace, config: str, cases: dict[str, int]) -> None:
    """Every fold validated and every held-out case's probabilities kept, or an error saying what to run."""
    n = fold_count(ws)
    missing = missing_folds(ws, config, n)
    if missing:
        raise AutosegError(f"{ws.config_dir(config)}: fold(s) {missing} are not validated; train them with "
                           f"`autoseg train {ws.root} -c {config} -f K {FLAG}`, or leave {config} out with -c")
    lacking = sorted({k for c, k in cases.items() if not validation_probabilities_path(ws, config, k, c).is_file()})
    if lacking:
        raise AutosegError(f"{ws.config_dir(config)}: fold(s) {lacking} kept no validation probabilities "
                           f"(validation/<case>.npz); validate again with `autoseg train {ws.root} -c {config} "
                           f"-f K --resume {FLAG}`")


def load_probabilities(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            return z["probabilities"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise AutosegError(f"{path}: unreadable probabilities ({e}); validate the fold again with {FLAG}") from e


def ensemble_probabilities(ws: Workspace, members: list[str], fold: int, case: str) -> np.ndarray:
    """The mean of the members' validation probabilities of ``case`` (all on the case's original grid)."""
    probs = [load_probabilities(validation_probabilities_path(ws, c, fold, case)) for c in members]
    if len({p.shape for p in probs}) > 1:
        raise AutosegError(f"case {case}: the probabilities of {members} have different shapes "
                           f"{[p.shape for p in probs]}; validate the folds again")
    return np.mean(probs, axis=0)


def candidate_members(configs: list[str]) -> list[tuple[str, ...]]:
    return [(c,) for c in configs] + list(combinations(configs, 2))


def to_labels(probs: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    values = np.array(sorted(labels.values()))
    return values[np.argmax(probs, 0)].astype(np.int16)


def score_candidates(ws: Workspace, configs: list[str], cases: dict[str, int], labels: dict[str, int],
                     ds: DatasetInfo) -> dict[str, dict]:
    """{name: {"members", "dice": {label: mean Dice over cases}, "mean"}}; each case's probabilities are read
    once per configuration."""
    fg = {n: v for n, v in labels.items() if v != 0}
    cands = candidate_members(configs)
    dice: dict[tuple, dict[str, list]] = {m: {n: [] for n in fg} for m in cands}
    for case, fold in sorted(cases.items()):
        ref, _ = read_label(ds.label_file(case), case)
        probs = {c: ensemble_probabilities(ws, [c], fold, case) for c in configs}
        for m in cands:
            seg = to_labels(np.mean([probs[c] for c in m], axis=0), labels)
            if seg.shape != ref.shape:
                raise AutosegError(f"case {case}: probabilities of {m} have shape {seg.shape[1:]}, the reference "
                                   f"{ref.shape}; validate the folds again")
            for n, v in fg.items():
                dice[m][n].append(dice_iou(seg, ref, v)[0])
    table = {}
    for m in cands:
        per = {n: float(np.mean([x for x in d if x is not None] or [0])) for n, d in dice[m].items()}
        table["+".join(m)] = {"members": list(m), "dice": per, "mean": float(np.mean(list(per.values())))}
    return table


def _winner_postprocessing(ws: Workspace, members: list[str], cases: dict[str, int], labels: dict[str, int],
                           ds: DatasetInfo) -> dict:
    def items():
        for case, fold in sorted(cases.items()):
            seg = to_labels(ensemble_probabilities(ws, members, fold, case), labels)
            yield seg, read_label(ds.label_file(case), case)[0]

    rows = lcc_rows(items(), labels)
    print(f"largest-component postprocessing of {'+'.join(members)} ({len(cases)} cases)")
    print(format_table(["label", "Dice", "Dice with LCC", "apply"], rows), flush=True)
    return postprocessing_record(rows, labels, len(cases))


def trained_configurations(ws: Workspace, plans: Plans) -> list[str]:
    return [c for c in plans.configurations if any(ws.config_dir(c).glob("fold_*/checkpoint_final.pt"))]


def rank_configurations(ws: Workspace, configs: list[str] | None = None) -> dict:
    """Rank the candidates, decide the winner's postprocessing, write best.json and print the ranking."""
    plans = Plans.load(ws.require_plans().plans)
    configs = list(dict.fromkeys(configs or trained_configurations(ws, plans)))
    if not configs:
        raise AutosegError(f"{ws.root}: no trained configuration; run `autoseg train ... {FLAG}` first")
    for c in configs:
        plans.configuration(c)
    cases = held_out_cases(ws)
    for c in configs:
        check_configuration(ws, c, cases)
    ds = load_dataset(plans.dataset_dir)
    table = score_candidates(ws, configs, cases, plans.labels, ds)
    ranked = sorted(table, key=lambda n: -table[n]["mean"])
    winner = table[ranked[0]]["members"]
    pp = _winner_postprocessing(ws, winner, cases, plans.labels, ds)
    record = write_best(ws, winner, postprocessed_dice(pp), table, pp, "find-best")
    fg = [n for n, v in plans.labels.items() if v != 0]
    rows = [[i + 1, n, *[table[n]["dice"][f] for f in fg], table[n]["mean"]] for i, n in enumerate(ranked)]
    print(f"cross-validation of {len(configs)} configuration(s) and their pairs ({len(cases)} cases, "
          f"{fold_count(ws)} folds):")
    print(format_table(["rank", "candidate", *fg, "mean Dice"], rows))
    print(f"best: {record['name']} ({record['kind']}), mean Dice {record['cv_mean_foreground_dice']:.4f} with "
          f"postprocessing (LCC labels {pp['lcc_labels'] or 'none'}); written to {ws.best}", flush=True)
    return record
