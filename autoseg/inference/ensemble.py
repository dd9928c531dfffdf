"""Predict with an ensemble of configurations: each member's folds are ensembled first (its Predictor), the
members' probabilities meet on the image's own grid and are averaged, then argmax and the ensemble's
postprocessing (decided by `autoseg find-best`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..io.images import ending_of, write_label
from ..postprocessing.components import apply_postprocessing
from ..utils import format_table, progress
from ..workspace import Workspace
from .predictor import Predictor, save_probabilities_npz


class EnsemblePredictor:
    def __init__(self, members: list[Predictor], lcc_labels: list[int]) -> None:
        self.members, self.lcc_labels = members, list(lcc_labels)
        self.values = np.array(sorted(members[0].plans.labels.values()))

    @staticmethod
    def from_run(ws: Workspace, configs: list[str], folds: list[str] | None, checkpoint: str, device: str,
                 step: float, mirror: bool, lcc_labels: list[int]) -> "EnsemblePredictor":
        members = [Predictor.from_run(ws, c, folds, checkpoint, device, step, mirror, use_postprocessing=False)
                   for c in configs]
        return EnsemblePredictor(members, lcc_labels)

    def probabilities(self, data: np.ndarray, geom) -> np.ndarray:
        """The mean of the members' probabilities on the full original grid (float32)."""
        return np.mean([m.full_probabilities(data, geom).astype(np.float32) for m in self.members], axis=0)

    def predict_files(self, image_files: list[Path], out_file: Path, save_probabilities: bool = False) -> None:
        data, geom = self.members[0].read_checked(image_files, out_file.name)
        probs = self.probabilities(data, geom)
        seg = self.values[np.argmax(probs, 0)].astype(np.int16)
        if self.lcc_labels:
            seg = apply_postprocessing(seg, self.lcc_labels)
        write_label(seg, geom, out_file)
        if save_probabilities:
            save_probabilities_npz(probs.astype(np.float16), self.values.tolist(), out_file)


def predict_ensemble(pred: EnsemblePredictor, inputs: list[tuple[str, list[Path]]], out_dir: Path,
                     save_probabilities: bool, select: Callable | None = None) -> list[Path]:
    if select is not None:
        inputs = select(inputs)
        if not inputs:
            return []
    out_dir.mkdir(parents=True, exist_ok=True)
    names = "+".join(m.config for m in pred.members)
    written, timings = [], []
    for case, files in progress(inputs, desc=f"predict ensemble {names}"):
        t0 = time.time()
        out = out_dir / f"{case}{ending_of(files[0])}"
        pred.predict_files(files, out, save_probabilities)
        written.append(out)
        timings.append(time.time() - t0)
    print(format_table(["cases", "ensemble", "folds", "postprocessing (LCC labels)", "s/case (median)"],
                       [[len(written), names, "/".join(str(len(m.networks)) for m in pred.members),
                         pred.lcc_labels or "none", f"{np.median(timings):.2f}"]]), flush=True)
    return written
