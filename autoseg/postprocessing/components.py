"""Keep the largest connected component of chosen labels (cc3d), and decide from cross-validation which."""
from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np

from ..core.jsonio import load_json


def keep_largest_component(seg: np.ndarray, label: int, connectivity: int = 26) -> np.ndarray:
    """Return a copy of ``seg`` where voxels of ``label`` outside its largest component become background."""
    out = seg.copy()
    mask = seg == label
    if not mask.any():
        return out
    conn = connectivity if seg.ndim == 3 else 8
    cc = cc3d.connected_components(mask.astype(np.uint8), connectivity=conn)
    counts = np.bincount(cc.ravel())
    counts[0] = 0
    out[(cc != 0) & (cc != int(np.argmax(counts)))] = 0
    return out


def apply_postprocessing(seg: np.ndarray, lcc_labels: list[int]) -> np.ndarray:
    for lab in lcc_labels:
        seg = keep_largest_component(seg, int(lab))
    return seg


SINGLE_PIECE_SHARE = 0.8


def single_piece_labels(fingerprint: dict, labels: dict, share: float = SINGLE_PIECE_SHARE) -> list[int]:
    """The labels that form one connected piece in at least ``share`` of the training references that contain
    them (from the fingerprint's ``components_per_label``). With no cross-validation to decide from (a model
    trained on every case, ``-f all``), these are the labels whose largest component is kept: a structure known
    to be one piece loses only spurious islands. Plain integer labels only (not regions, not ``ignore``); an older
    fingerprint without the counts gives none."""
    cases = fingerprint.get("cases", [])
    if not cases or any("components_per_label" not in c for c in cases):
        return []
    chosen = []
    for name, value in labels.items():
        if name == "ignore" or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        counts = [c["components_per_label"][str(value)] for c in cases if str(value) in c["components_per_label"]]
        if counts and sum(n == 1 for n in counts) >= share * len(counts):
            chosen.append(value)
    return chosen


def load_postprocessing(path: Path) -> list[int]:
    if not Path(path).is_file():
        return []
    return [int(v) for v in load_json(path).get("lcc_labels", [])]
