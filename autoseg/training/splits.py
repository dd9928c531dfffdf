"""Cross-validation splits that keep all of one patient's cases (e.g. ED and ES) in the same fold."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.jsonio import load_json, save_json


def grouped_kfold(cases: list[str], groups: dict[str, str], n_folds: int = 5, seed: int = 12345) -> list[dict]:
    """Assign whole groups to folds, largest groups first to the fold with the fewest cases (ties broken by a
    seeded shuffle), so folds are balanced in cases and no group is split."""
    by_group: dict[str, list[str]] = {}
    for c in sorted(cases):
        by_group.setdefault(groups.get(c, c), []).append(c)
    names = sorted(by_group)
    if len(names) < n_folds:
        raise AutosegError(f"{len(names)} patient groups cannot make {n_folds} folds; use fold 'all' or more data")
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(by_group[g]))  # stable: shuffled order within equal sizes
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for g in names:
        k = min(range(n_folds), key=lambda i: (len(folds[i]), i))
        folds[k].extend(by_group[g])
    all_cases = sorted(cases)
    return [{"train": [c for c in all_cases if c not in set(folds[k])], "val": sorted(folds[k])}
            for k in range(n_folds)]


def save_splits(splits: list[dict], path: Path) -> None:
    save_json(splits, path)


def read_splits(path: Path) -> list[dict]:
    """The folds of ``splits.json``, checked to be a list of objects."""
    if not Path(path).is_file():
        raise AutosegError(f"{path}: no splits; re-run `autoseg plan` (it writes the 5-fold split) or train -f all")
    splits = load_json(path)
    if not isinstance(splits, list) or not all(isinstance(s, dict) for s in splits):
        raise AutosegError(f"{path}: expected a list of {{\"train\": [...], \"val\": [...]}} folds; re-run "
                           "`autoseg plan` to rewrite it")
    return splits


def load_fold(path: Path, fold: int | str, all_cases: list[str],
              splits: list[dict] | None = None) -> tuple[list[str], list[str]]:
    """(train, val) case lists. Fold 'all' trains on every case and has no held-out validation. The split is
    checked: its case names become file names, and a case the dataset lacks would fail later, in a worker."""
    if fold == "all":
        return sorted(all_cases), []
    splits = splits if splits is not None else read_splits(path)
    try:
        k = int(fold)
    except ValueError:
        raise AutosegError(f"fold {fold!r} is not a fold number (0..{len(splits) - 1}) or 'all'") from None
    if not 0 <= k < len(splits):
        raise AutosegError(f"{path}: fold {k} does not exist (folds 0..{len(splits) - 1} or 'all')")
    return _fold_cases(splits[k], "train", path, k, all_cases), _fold_cases(splits[k], "val", path, k, all_cases)


def _fold_cases(split: dict, part: str, path: Path, k: int, all_cases: list[str]) -> list[str]:
    from ..io.workspace import check_name

    cases = split.get(part)
    if not isinstance(cases, list):
        raise AutosegError(f"{path}: fold {k} has no {part!r} list of case names; re-run `autoseg plan`")
    known = set(all_cases)
    for c in cases:
        check_name(c, f"fold {k} case", path)
        if c not in known:
            raise AutosegError(f"{path}: fold {k} names case {c!r}, which the dataset does not have; re-run "
                               "`autoseg plan` after changing the dataset")
    return list(cases)
