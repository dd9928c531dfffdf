"""Predict images with one or several trained folds of a configuration.

read -> crop -> normalise -> resample -> sliding window x folds (mean softmax) -> resample probabilities to the
cropped original grid -> argmax -> uncrop -> postprocess -> write with the input's size, spacing, origin, direction.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..device import resolve_device
from ..io.dataset import case_ids_in
from ..io.images import SUPPORTED_ENDINGS, Geometry, ending_of, read_case_images, write_label
from ..networks.checkpoint import load_checkpoint, network_from_checkpoint
from ..planner.plans import Plans
from ..postprocessing.components import apply_postprocessing, load_postprocessing
from ..preprocessing.cropping import uncrop
from ..preprocessing.preprocessor import preprocess_image
from ..preprocessing.resampling import resample_probabilities
from ..utils import AutosegError, atomic_write_bytes, format_table, progress
from ..workspace import Workspace
from .sliding_window import sliding_window_logits


@dataclass
class Predictor:
    plans: Plans
    config: str
    networks: list[torch.nn.Module]
    lcc_labels: list[int]
    device: torch.device
    step: float = 0.5
    mirror: bool = True
    tile_batch: int = 4
    previous: "Predictor | None" = None  # the cascade's first stage, run before this one (its folds ensembled)

    @staticmethod
    def from_run(ws: Workspace, config: str, folds: list[str] | None = None, checkpoint: str = "checkpoint_final.pt",
                 device: str = "auto", step: float = 0.5, mirror: bool = True,
                 use_postprocessing: bool = True) -> "Predictor":
        plans = Plans.load(ws.require_plans().plans)
        plans.configuration(config)
        if not folds:
            folds = sorted(p.name[5:] for p in ws.config_dir(config).glob("fold_*")
                           if (p / checkpoint).is_file())
            if not folds:
                raise AutosegError(f"{ws.config_dir(config)}: no trained fold with {checkpoint}; run `autoseg train`")
        dev = resolve_device(device)
        nets = []
        for f in folds:
            ckpt = load_checkpoint(ws.fold_dir(config, f) / checkpoint)
            nets.append(network_from_checkpoint(ckpt, dev))
        lcc = load_postprocessing(ws.postprocessing(config)) if use_postprocessing else []
        prev = plans.configuration(config).previous_stage
        first = Predictor.from_run(ws, prev, None, checkpoint, device, step, mirror, False) if prev else None
        return Predictor(plans, config, nets, lcc, dev, step, mirror, previous=first)

    def grid_probabilities(self, data: np.ndarray, geom: Geometry) -> tuple[np.ndarray, dict]:
        """Class probabilities on the configuration's preprocessed grid (the folds' mean) and the properties."""
        cfg = self.plans.configuration(self.config)
        pre, _, props = preprocess_image(data, geom, self.plans, cfg)
        if self.previous is not None:
            pre = np.concatenate([pre, self._previous_stage_channels(data, geom, pre.shape[1:])])
        x = torch.from_numpy(pre)
        probs = None
        for net in self.networks:
            logits = sliding_window_logits(net, x, cfg.patch_size, self.plans.num_classes, self.step, self.mirror,
                                           self.tile_batch, self.device, amp=self.device.type == "cuda")
            p = torch.softmax(logits, 0)
            probs = p if probs is None else probs + p
        return (probs / len(self.networks)).numpy(), props

    def _previous_stage_channels(self, data: np.ndarray, geom: Geometry, shape) -> np.ndarray:
        """The first stage's segmentation on this stage's grid, one-hot (the cascade's extra input channels)."""
        from ..training.cascade import one_hot, to_next_stage

        first = self.previous
        grid, props = first.grid_probabilities(data, geom)
        rp = first.plans.configuration(first.config).resampling_probabilities
        seg = to_next_stage(grid, props, self.plans.configuration(self.config), rp)
        if tuple(seg.shape) != tuple(shape):
            raise AutosegError(f"{first.config} predicts on a grid {seg.shape} that does not resample to "
                               f"{self.config}'s {tuple(shape)}; the plans of the two stages disagree")
        return one_hot(seg, self.plans.num_classes)

    def probabilities(self, data: np.ndarray, geom: Geometry,
                      grid_sink: Callable[[np.ndarray, dict], None] | None = None) -> tuple[np.ndarray, dict]:
        """Class probabilities (K, *cropped original grid, transposed back) and the preprocessing properties;
        ``grid_sink`` also receives them on the preprocessed grid (the cascade keeps them for its next stage)."""
        cfg = self.plans.configuration(self.config)
        probs, props = self.grid_probabilities(data, geom)
        if grid_sink is not None:
            grid_sink(probs, props)
        rp = cfg.resampling_probabilities
        probs = resample_probabilities(probs, props["shape_after_crop_transposed"], rp["order"], rp["separate_z"],
                                       rp["order_z"])
        bwd = self.plans.transpose_backward
        return probs.transpose([0] + [a + 1 for a in bwd]), props

    def segment(self, data: np.ndarray, geom: Geometry, grid_sink: Callable[[np.ndarray, dict], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(label map on the full original grid, probabilities on the cropped grid, preprocessing properties)."""
        probs, props = self.probabilities(data, geom, grid_sink)
        values = np.array(sorted(self.plans.labels.values()))
        seg = values[np.argmax(probs, 0)].astype(np.int16)
        seg = uncrop(seg, props["bbox"], geom.shape, fill=0)
        if self.lcc_labels:
            seg = apply_postprocessing(seg, self.lcc_labels)
        return seg, probs, props

    def predict_files(self, image_files: list[Path], out_file: Path, save_probabilities: bool = False,
                      grid_sink: Callable[[np.ndarray, dict], None] | None = None) -> None:
        case = out_file.name
        data, geom = read_case_images(image_files, case)
        if data.shape[0] != self.plans.num_input_channels:
            raise AutosegError(f"case {case}: {data.shape[0]} channel file(s) found, but the model expects "
                               f"{self.plans.num_input_channels} ({self.plans.channel_names})")
        seg, probs, props = self.segment(data, geom, grid_sink)
        write_label(seg, geom, out_file)
        if save_probabilities:
            stem = str(out_file)[: -len(ending_of(out_file))]
            # probabilities on the full original grid; outside the crop box the background has probability 1
            full = uncrop(probs.astype(np.float16), props["bbox"], geom.shape, fill=0)
            full[0][full.sum(0) == 0] = 1

            def _w(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, probabilities=full, labels=np.array(sorted(self.plans.labels.values())))

            atomic_write_bytes(stem + ".npz", _w)


def discover_inputs(inp: Path, file_ending: str, num_channels: int) -> list[tuple[str, list[Path]]]:
    """[(case, channel files)] for a folder in the nnU-Net layout (<case>_<ch:04d><ending>) or a single file."""
    if inp.is_dir():
        cases = case_ids_in(inp, file_ending)
        if not cases:
            raise AutosegError(f"{inp}: no images named <case>_0000{file_ending}")
        out = []
        for c in cases:
            files = [inp / f"{c}_{ch:04d}{file_ending}" for ch in range(num_channels)]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise AutosegError(f"case {c}: missing channel file(s) {missing} in {inp}")
            out.append((c, files))
        return out
    if not inp.is_file():
        raise AutosegError(f"{inp}: input not found")
    ending = ending_of(inp)
    stem = inp.name[: -len(ending)]
    m = re.match(r"^(.*)_(\d{4})$", stem)
    if m:
        case = m.group(1)
        files = [inp.parent / f"{case}_{ch:04d}{ending}" for ch in range(num_channels)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise AutosegError(f"case {case}: missing channel file(s) {missing} beside {inp}")
        return [(case, files)]
    if num_channels != 1:
        raise AutosegError(f"{inp}: the model expects {num_channels} channels; name the files <case>_0000{ending}, ...")
    return [(stem, [inp])]


def predict(ws: Workspace, inp: str | Path, out_dir: str | Path, config: str | None = None,
            folds: list[str] | None = None, mirror: bool = True, step: float = 0.5,
            save_probabilities: bool = False, device: str = "auto",
            checkpoint: str = "checkpoint_final.pt",
            select: Callable[[list[tuple[str, list[Path]]]], list[tuple[str, list[Path]]]] | None = None
            ) -> list[Path]:
    """``select`` picks the cases to predict from the discovered inputs (sharding, --continue; autoseg.cluster)."""
    ws.require_plans()
    if not Path(inp).exists():
        raise AutosegError(f"{inp}: input not found (give an image file or a folder of <case>_0000 files)")
    plans = Plans.load(ws.plans)
    if config is None:
        config = _best_or_only_config(ws, plans)
    pred = Predictor.from_run(ws, config, folds, checkpoint, device, step, mirror)
    inputs = discover_inputs(Path(inp), plans.file_ending if Path(inp).is_dir() else ending_of(inp),
                             plans.num_input_channels)
    if select is not None:
        inputs = select(inputs)
        if not inputs:
            return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, timings = [], []
    for case, files in progress(inputs, desc=f"predict {config} ({len(pred.networks)} fold(s))"):
        t0 = time.time()
        ending = ending_of(files[0])
        out = out_dir / f"{case}{ending}"
        pred.predict_files(files, out, save_probabilities)
        written.append(out)
        timings.append(time.time() - t0)
    print(format_table(["cases", "config", "folds", "mirroring", "postprocessing (LCC labels)", "s/case (median)"],
                       [[len(written), config, len(pred.networks), mirror, pred.lcc_labels or "none",
                         f"{np.median(timings):.2f}"]]), flush=True)
    return written


def _best_or_only_config(ws: Workspace, plans: Plans) -> str:
    best = ws.root / "best.json"
    if best.is_file():
        from ..utils import load_json

        return str(load_json(best)["configuration"])
    trained = [c for c in plans.configurations if any(ws.config_dir(c).glob("fold_*/checkpoint_final.pt"))]
    if not trained:
        raise AutosegError(f"{ws.root}: no trained configuration; run `autoseg train`")
    if len(trained) > 1:
        raise AutosegError(f"{ws.root}: several trained configurations {trained}; choose one with -c")
    return trained[0]


__all__ = ["Predictor", "predict", "discover_inputs", "resolve_device", "SUPPORTED_ENDINGS"]
