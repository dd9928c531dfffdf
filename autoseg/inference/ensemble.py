"""Predict with an ensemble of configurations: each member's folds are ensembled first (its Predictor), the
members' probabilities meet on the image's own grid and are averaged, then argmax and the ensemble's
postprocessing (decided by `autoseg find-best`). ``autoseg.inference.predictor.predict`` runs it like a single
configuration: the same input checks, output-folder lock and manifest (a rerun keeps finished cases)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.images import ending_of, write_label
from ..io.workspace import Workspace
from ..postprocessing.components import apply_postprocessing
from .predictor import Predictor, save_probabilities_npz


class EnsemblePredictor:
    def __init__(self, members: list[Predictor], lcc_labels: list[int]) -> None:
        self.members, self.lcc_labels = members, list(lcc_labels)
        self.configs = [m.config for m in members]
        self.config = "+".join(self.configs)
        self.networks = [n for m in members for n in m.networks]
        self.step, self.mirror = members[0].step, members[0].mirror
        self.folds_text = "/".join(str(len(m.networks)) for m in members)

    @staticmethod
    def from_run(ws: Workspace, configs: list[str], folds: list[str] | None, checkpoint: str, device: str,
                 step: float, mirror: bool, lcc_labels: list[int]) -> "EnsemblePredictor":
        members = [Predictor.from_run(ws, c, folds, checkpoint, device, step, mirror, use_postprocessing=False)
                   for c in configs]
        return EnsemblePredictor(members, lcc_labels)

    def probabilities(self, data: np.ndarray, geom) -> np.ndarray:
        """The mean of the members' probabilities on the full original grid (float32)."""
        return np.mean([m.full_probabilities(data, geom).astype(np.float32) for m in self.members], axis=0)

    def segment(self, data: np.ndarray, geom) -> tuple[np.ndarray, np.ndarray]:
        """(label map, mean probabilities), both on the image's full grid."""
        probs = self.probabilities(data, geom)
        seg = self.members[0].plans.label_spec.segment(probs)  # argmax, or regions in regions_class_order
        if self.lcc_labels:
            seg = apply_postprocessing(seg, self.lcc_labels)
        return seg, probs

    def predict_files(self, image_files: list[Path], out_file: Path, save_probabilities: bool = False) -> None:
        case = out_file.name[: -len(ending_of(out_file))]
        data, geom = self.members[0].read_checked(image_files, case)
        for m in self.members[1:]:  # each member resamples to its own grid
            m.check_memory(data.shape, geom, case)
        seg, probs = self.segment(data, geom)
        write_label(seg, geom, out_file)
        if save_probabilities:
            save_probabilities_npz(probs.astype(np.float16), self.members[0].output_names(), out_file)

