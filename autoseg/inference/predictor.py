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
        return Predictor(plans, config, nets, lcc, dev, step, mirror)

    def probabilities(self, data: np.ndarray, geom: Geometry) -> tuple[np.ndarray, dict]:
        """Class probabilities (K, *cropped original grid, transposed back) and the preprocessing properties."""
        cfg = self.plans.configuration(self.config)
        pre, _, props = preprocess_image(data, geom, self.plans, cfg)
        x = torch.from_numpy(pre)
        probs = None
        for net in self.networks:
            logits = sliding_window_logits(net, x, cfg.patch_size, self.plans.num_classes, self.step, self.mirror,
                                           self.tile_batch, self.device, amp=self.device.type == "cuda")
            p = torch.softmax(logits, 0)
            probs = p if probs is None else probs + p
        probs = (probs / len(self.networks)).numpy()
        rp = cfg.resampling_probabilities
        probs = resample_probabilities(probs, props["shape_after_crop_transposed"], rp["order"], rp["separate_z"],
                                       rp["order_z"])
        bwd = self.plans.transpose_backward
        return probs.transpose([0] + [a + 1 for a in bwd]), props

    def segment(self, data: np.ndarray, geom: Geometry) -> tuple[np.ndarray, np.ndarray, dict]:
        """(label map on the full original grid, probabilities on the cropped grid, preprocessing properties)."""
        probs, props = self.probabilities(data, geom)
        values = np.array(sorted(self.plans.labels.values()))
        seg = values[np.argmax(probs, 0)].astype(np.int16)
        seg = uncrop(seg, props["bbox"], geom.shape, fill=0)
        if self.lcc_labels:
            seg = apply_postprocessing(seg, self.lcc_labels)
        return seg, probs, props

    def full_probabilities(self, data: np.ndarray, geom: Geometry) -> np.ndarray:
        """Class probabilities on the image's own full grid (float16); outside the crop box the background has
        probability 1. Configurations with other spacings meet here, so ensembles average these."""
        probs, props = self.probabilities(data, geom)
        full = uncrop(probs.astype(np.float16), props["bbox"], geom.shape, fill=0)
        full[0][full.sum(0) == 0] = 1
        return full

    def read_checked(self, image_files: list[Path], case: str) -> tuple[np.ndarray, Geometry]:
        data, geom = read_case_images(image_files, case)
        if data.shape[0] != self.plans.num_input_channels:
            raise AutosegError(f"case {case}: {data.shape[0]} channel file(s) found, but the model expects "
                               f"{self.plans.num_input_channels} ({self.plans.channel_names})")
        return data, geom

    def predict_files(self, image_files: list[Path], out_file: Path, save_probabilities: bool = False) -> None:
        data, geom = self.read_checked(image_files, out_file.name)
        seg, probs, props = self.segment(data, geom)
        write_label(seg, geom, out_file)
        if save_probabilities:
            full = uncrop(probs.astype(np.float16), props["bbox"], geom.shape, fill=0)
            full[0][full.sum(0) == 0] = 1
            save_probabilities_npz(full, sorted(self.plans.labels.values()), out_file)


def save_probabilities_npz(full: np.ndarray, labels: list[int], out_file: Path) -> None:
    """``<case>.npz`` beside ``out_file``: probabilities on the full original grid and the label values, written
    under a temporary name first."""
    stem = str(out_file)[: -len(ending_of(out_file))]

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, probabilities=full, labels=np.array(labels))

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


def predict(ws: Workspace, inp: str | Path, out_dir: str | Path, config: str | list[str] | None = None,
            folds: list[str] | None = None, mirror: bool = True, step: float = 0.5,
            save_probabilities: bool = False, device: str = "auto",
            checkpoint: str = "checkpoint_final.pt",
            select: Callable[[list[tuple[str, list[Path]]]], list[tuple[str, list[Path]]]] | None = None
            ) -> list[Path]:
    """``select`` picks the cases to predict from the discovered inputs (sharding, --continue; autoseg.cluster).
    ``config``: one configuration, several (an ensemble), or None for best.json's winner (or the only trained
    configuration)."""
    ws.require_plans()
    if not Path(inp).exists():
        raise AutosegError(f"{inp}: input not found (give an image file or a folder of <case>_0000 files)")
    plans = Plans.load(ws.plans)
    members, lcc = _chosen_members(ws, plans, config)
    inputs = discover_inputs(Path(inp), plans.file_ending if Path(inp).is_dir() else ending_of(inp),
                             plans.num_input_channels)
    if len(members) > 1:
        from .ensemble import EnsemblePredictor, predict_ensemble

        ens = EnsemblePredictor.from_run(ws, members, folds, checkpoint, device, step, mirror, lcc)
        return predict_ensemble(ens, inputs, Path(out_dir), save_probabilities, select)
    config = members[0]
    pred = Predictor.from_run(ws, config, folds, checkpoint, device, step, mirror)
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


def _chosen_members(ws: Workspace, plans: Plans, config: str | list[str] | None) -> tuple[list[str], list[int]]:
    """(configurations to run, LCC labels of an ensemble); says what it runs when best.json chose it."""
    from ..postprocessing.decide import read_best

    if isinstance(config, str):
        return [config], []
    if config and len(config) == 1:
        return list(config), []
    best = read_best(ws)
    if config:
        members = list(dict.fromkeys(config))
        same = best is not None and sorted(best["configurations"]) == sorted(members)
        lcc = list(best["postprocessing"].get("lcc_labels", [])) if same else []
        print(f"predict: ensemble of {' + '.join(members)}; postprocessing "
              f"{lcc or 'none'}{'' if same else ' (best.json decided none for this ensemble: run find-best)'}",
              flush=True)
        return members, lcc
    if best is None:
        return [_only_trained(ws, plans)], []
    members = best["configurations"]
    print(f"predict: best.json's winner {best.get('name', '+'.join(members))} ({best.get('kind', 'configuration')}, "
          f"cross-validation mean Dice {best.get('cv_mean_foreground_dice', float('nan')):.4f})", flush=True)
    return members, list((best.get("postprocessing") or {}).get("lcc_labels", []))


def _only_trained(ws: Workspace, plans: Plans) -> str:
    trained = [c for c in plans.configurations if any(ws.config_dir(c).glob("fold_*/checkpoint_final.pt"))]
    if not trained:
        raise AutosegError(f"{ws.root}: no trained configuration; run `autoseg train`")
    if len(trained) > 1:
        raise AutosegError(f"{ws.root}: several trained configurations {trained}; choose one with -c, or run "
                           f"`autoseg find-best {ws.root}`")
    return trained[0]


def _best_or_only_config(ws: Workspace, plans: Plans) -> str:
    """One configuration (the Python Predictor loads one): best.json's single winner or the only trained one."""
    from ..postprocessing.decide import read_best

    best = read_best(ws)
    if best is None:
        return _only_trained(ws, plans)
    if len(best["configurations"]) > 1:
        raise AutosegError(f"{ws.best}: the best is the ensemble {'+'.join(best['configurations'])}; this loads "
                           "one configuration: give it (or use `autoseg predict`, which runs ensembles)")
    return best["configurations"][0]


__all__ = ["Predictor", "predict", "discover_inputs", "resolve_device", "SUPPORTED_ENDINGS"]
