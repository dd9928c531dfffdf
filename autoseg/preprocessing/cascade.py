"""The cascade's extra input (nnU-Net's 3d_lowres -> 3d_cascade_fullres): the low-resolution stage's segmentation,
resampled to the full-resolution grid and given to the second stage as one-hot channels.

While a ``3d_lowres`` fold validates, each held-out case's class probabilities on the low-res grid are resampled to
the next stage's grid, turned into a label map and kept in ``3d_lowres/predicted_next_stage/<next stage>/`` (as
nnU-Net does). Training the cascade reads those cross-validation predictions for all its cases, so every case is fed
a prediction made by a model that never saw it; at inference the low-res folds run first (ensembled)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes
from ..io.workspace import Workspace
from ..planner.plans import ConfigurationPlan, Plans
from .preprocessor import target_spacing_for
from .resampling import case_resampling, new_shape_for, resample_probabilities

NEXT_STAGE_FOLDER = "predicted_next_stage"


def next_stage_dir(ws: Workspace, previous: str, config: str) -> Path:
    """Where ``previous``'s cross-validation predictions for ``config`` are kept."""
    return ws.config_dir(previous) / NEXT_STAGE_FOLDER / config


def next_stage_shape(props: dict, next_cfg: ConfigurationPlan) -> list[int]:
    """The next stage's preprocessed grid for a case (the same rule its preprocessing follows)."""
    spacing_t = props["spacing_transposed"]
    return new_shape_for(props["shape_after_crop_transposed"], spacing_t, target_spacing_for(next_cfg, spacing_t))


def to_next_stage(grid_probs: np.ndarray, props: dict, next_cfg: ConfigurationPlan,
                  rp: dict) -> np.ndarray:
    """(K, *low-res grid) probabilities -> class indices (int8) on the next stage's grid; probabilities are
    resampled before the argmax, so thin structures are not lost to nearest-neighbour label resampling."""
    per_case = case_resampling(props["target_spacing"], target_spacing_for(next_cfg, props["spacing_transposed"]))
    probs = resample_probabilities(grid_probs.astype(np.float32), next_stage_shape(props, next_cfg), rp["order"],
                                   order_z=rp["order_z"], **per_case)
    return np.argmax(probs, 0).astype(np.int8)


def one_hot(seg: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices (...) -> (K, ...) float32 one-hot channels."""
    return (np.arange(num_classes).reshape((-1,) + (1,) * seg.ndim) == seg[None]).astype(np.float32)


def save_next_stage(path: Path, seg: np.ndarray) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, seg)

    atomic_write_bytes(str(path), _w)


def require_previous_stage(ws: Workspace, plans: Plans, config: str, cases: list[str],
                           splits: list[dict] | None) -> Path:
    """The folder of the previous stage's predictions for every case, or an error naming the folds to train."""
    prev = plans.configuration(config).previous_stage
    folder = next_stage_dir(ws, prev, config)
    missing = [c for c in cases if not (folder / f"{c}.npy").is_file()]
    if not missing:
        return folder
    folds = sorted({k for k, s in enumerate(splits or []) for c in missing if c in s["val"]})
    which = " ".join(str(k) for k in folds) if folds else "0 1 2 3 4"
    raise AutosegError(f"{folder}: no {prev} cross-validation prediction for {len(missing)} case(s) "
                       f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); {config} is trained on them: "
                       f"run `autoseg train {ws.root} -c {prev} -f K` "
                       f"for K in {which}")


def check_next_stage_shape(seg: np.ndarray, shape, case: str, folder: Path) -> None:
    if tuple(seg.shape) != tuple(shape):
        raise AutosegError(f"{folder / (case + '.npy')}: shape {tuple(seg.shape)} is not the preprocessed image's "
                           f"{tuple(shape)}; the plans changed after 3d_lowres was trained: train its folds again")
