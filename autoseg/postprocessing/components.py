"""Keep the largest connected component of chosen labels (cc3d), and decide from cross-validation which."""
from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np

from ..utils import load_json


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


def load_postprocessing(path: Path) -> list[int]:
    if not Path(path).is_file():
        return []
    return [int(v) for v in load_json(path).get("lcc_labels", [])]
