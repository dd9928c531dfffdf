"""Predict images with the trained folds of a configuration, or an ensemble of configurations: ``Predictor``
(``autoseg.Predictor`` from Python) and ``predict`` (``autoseg predict``).

read -> crop -> normalise -> resample -> sliding window x folds (mean softmax) -> resample probabilities to the
cropped original grid -> argmax -> uncrop -> postprocess -> write with the input's size, spacing, origin, direction.
An ensemble averages its configurations' probabilities on the image's own grid before the argmax (``ensemble``).
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..core.device import autocast_dtype, available_memory, plan_precision, resolve_device
from ..core.errors import AutosegError
from ..core.faults import fault_point
from ..core.files import atomic_write_bytes, refuse_overwriting_inputs
from ..core.jsonio import load_json, save_json
from ..core.locks import folder_lock
from ..core.progress import format_table, progress
from ..io.cropping import uncrop
from ..io.dataset import case_channel_files, case_files_in, channels_in_file, dimension_of, mixed_layout_problems
from ..io.images import DUMMY_2D_SPACING, SUPPORTED_ENDINGS, Geometry, ending_of, read_case_images, write_label
from ..io.workspace import Workspace
from ..networks.checkpoint import load_checkpoint, network_from_checkpoint
from ..planner.plans import Plans
from ..postprocessing.components import (
    SINGLE_PIECE_SHARE,
    apply_postprocessing,
    load_postprocessing,
    single_piece_labels,
)
from ..preprocessing.preprocessor import preprocess_image, target_spacing_for
from ..preprocessing.resampling import case_resampling, new_shape_for, resample_probabilities, resampled_argmax
from ..sharing.model_zip import extracted_model, is_model_zip
from ..sharing.onnx_export import ONNX_NAME
from .ensemble import chosen_configurations, mean_full_probabilities
from .onnx_backend import OnnxNetwork
from .sliding_window import sliding_window_logits


@dataclass
class Predictor:
    """A loaded model that segments images: one configuration (the mean softmax of its folds; a cascade stage runs
    its first stage before it) or an ensemble of configurations (``members``, each with its folds: the mean of
    their probabilities on the image's own grid). ``autoseg predict`` and each fold's validation run this class, so
    the Python API's labels are the CLI's, voxel for voxel.

    From Python: ``Predictor.from_run(RUN_DIR or MODEL.zip)`` then ``predict(array, spacing, ...)`` or
    ``predict_image(sitk_image)``. Geometry follows SimpleITK: ``spacing``, ``origin`` and ``direction`` in
    (x, y[, z]) order, as ``image.GetSpacing()`` returns them; arrays in numpy order ((Z,) Y, X), as
    ``SimpleITK.GetArrayFromImage`` returns them."""

    plans: Plans
    config: str
    networks: list[torch.nn.Module]
    lcc_labels: list[int]
    device: torch.device
    step: float = 0.5
    mirror: bool = True
    tile_batch: int = 4
    previous: "Predictor | None" = None  # the cascade's first stage, run before this one (its folds ensembled)
    # the training images' spacing per axis (z, y, x): (smallest, largest), from the run's fingerprint
    train_spacing: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # an ensemble's configurations (each a Predictor with its folds); empty for one configuration
    members: list["Predictor"] = field(default_factory=list)

    @classmethod
    def from_run(cls, run_or_zip: str | Path, folds: Sequence[int | str] | None = None, device: str = "auto",
                 configuration: str | Sequence[str] | None = None, mirror: bool = True, step: float = 0.5,
                 backend: str = "torch") -> "Predictor":
        """Load the folds (default: every trained one) of a run folder or a model zip made by `autoseg export`.

        ``configuration`` defaults to best.json's winner (an ensemble of configurations included, with the
        postprocessing `autoseg find-best` decided for it), or the only trained one; a list of configurations is an
        ensemble (the mean of their probabilities), as ``autoseg predict -c A B``. A zip is unpacked into a temporary
        folder that is removed once the networks are in memory. ``backend='onnxruntime'`` runs each fold's
        ``network.onnx`` (from `autoseg export --onnx`) instead of the torch network, on the CPU."""
        if backend not in ("torch", "onnxruntime"):
            raise AutosegError(f"backend {backend!r}: choose 'torch' or 'onnxruntime'")
        args = (folds, device, configuration, mirror, step, backend)
        if is_model_zip(run_or_zip):
            with extracted_model(run_or_zip) as run_dir:
                return cls._from_folder(run_dir, *args)
        if not Path(run_or_zip).is_dir():
            raise AutosegError(f"{run_or_zip}: neither a run folder nor a model .zip")
        return cls._from_folder(Path(run_or_zip), *args)

    @classmethod
    def _from_folder(cls, run_dir: Path, folds, device: str, configuration: str | Sequence[str] | None,
                     mirror: bool, step: float, backend: str) -> "Predictor":
        ws = Workspace.at(run_dir).require_plans()
        members, lcc = chosen_configurations(ws, Plans.load(ws.plans), configuration)
        fold_names = None if not folds or list(folds) == ["all"] else [str(f) for f in folds]
        if len(members) > 1 and backend != "torch":
            raise AutosegError(f"backend {backend!r} runs one configuration; {'+'.join(members)} is an ensemble")
        if backend == "onnxruntime":
            device = "cpu"
        pred = cls.load(ws, members, fold_names, device=device, step=step, mirror=mirror, lcc_labels=lcc)
        if backend == "onnxruntime":
            config = members[0]
            folds_used = fold_names or sorted(p.parent.name[5:] for p in ws.config_dir(config).glob(
                "fold_*/checkpoint_final.pt"))
            pred.networks = [OnnxNetwork(ws.fold_dir(config, f) / ONNX_NAME) for f in folds_used]
        return pred

    @classmethod
    def load(cls, ws: Workspace, configs: list[str], folds: list[str] | None = None,
             checkpoint: str = "checkpoint_final.pt", device: str = "auto", step: float = 0.5, mirror: bool = True,
             lcc_labels: Sequence[int] = (), use_postprocessing: bool = True) -> "Predictor":
        """One configuration (with its own postprocessing.json when ``use_postprocessing``), or an ensemble of
        several with ``lcc_labels`` (best.json's decision for that ensemble)."""
        if len(configs) > 1:
            return cls.of_ensemble([cls.of_configuration(ws, c, folds, checkpoint, device, step, mirror,
                                                         use_postprocessing=False) for c in configs], lcc_labels)
        return cls.of_configuration(ws, configs[0], folds, checkpoint, device, step, mirror, use_postprocessing)

    @classmethod
    def of_ensemble(cls, members: list["Predictor"], lcc_labels: Sequence[int]) -> "Predictor":
        """An ensemble of loaded configurations, postprocessed with ``lcc_labels``."""
        first = members[0]
        return cls(first.plans, "+".join(m.config for m in members), [n for m in members for n in m.networks],
                   list(lcc_labels), first.device, first.step, first.mirror, members=list(members))

    @classmethod
    def of_configuration(cls, ws: Workspace, config: str, folds: list[str] | None = None,
                         checkpoint: str = "checkpoint_final.pt", device: str = "auto", step: float = 0.5,
                         mirror: bool = True, use_postprocessing: bool = True) -> "Predictor":
        """The folds (default: every one with ``checkpoint``) of one configuration of a run."""
        plans = Plans.load(ws.require_plans().plans)
        plans.configuration(config)  # an unknown name fails before the checkpoints load
        if not folds:
            folds = sorted(p.name[5:] for p in ws.config_dir(config).glob("fold_*")
                           if (p / checkpoint).is_file())
            if not folds:
                raise AutosegError(f"{ws.config_dir(config)}: no trained fold with {checkpoint}; run `autoseg train`")
        dev = resolve_device(device)
        nets = []
        for f in folds:
            path = ws.fold_dir(config, f) / checkpoint
            try:
                nets.append(network_from_checkpoint(load_checkpoint(path), dev))
            except AutosegError as e:  # say which file
                raise AutosegError(f"{path}: {e}") from None
        lcc = load_postprocessing(ws.postprocessing(config)) if use_postprocessing else []
        if use_postprocessing and not ws.postprocessing(config).is_file() and folds == ["all"]:
            lcc = _prior_postprocessing(ws, plans)
        prev = plans.configuration(config).previous_stage
        first = cls.of_configuration(ws, prev, None, checkpoint, device, step, mirror, False) if prev else None
        return cls(plans, config, nets, lcc, dev, step, mirror, previous=first,
                   train_spacing=_training_spacing(ws, plans))

    @property
    def configs(self) -> list[str]:
        return [m.config for m in self.members] if self.members else [self.config]

    @property
    def folds_text(self) -> str:
        return "/".join(str(len(m.networks)) for m in self.members) if self.members else str(len(self.networks))

    @property
    def labels(self) -> dict[str, int]:
        return dict(self.plans.labels)

    @property
    def configuration(self) -> str:
        """The configuration's name, or the ensemble's members joined by '+'."""
        return self.config

    @property
    def num_input_channels(self) -> int:
        return self.plans.num_input_channels

    def predict(self, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float] | None = None,
                direction: Sequence[float] | None = None, return_probabilities: bool = False):
        """Label map of ``array`` ((Z,) Y, X, with a leading channel axis for multi-channel models).

        Returns the int16 label array of the image's shape, or (labels, probabilities (K, (Z,) Y, X) float32)
        with ``return_probabilities``; probabilities follow the sorted label values."""
        data, geom, spatial = self._as_internal(np.asarray(array), spacing, origin, direction)
        self.check_input(data, geom, "predict", "the array")
        seg, full = self.segment_full_grid(data, geom, return_probabilities)
        seg = seg.reshape(spatial)
        if not return_probabilities:
            return seg
        return seg, full.reshape((full.shape[0],) + spatial)

    def predict_image(self, image: sitk.Image | Sequence[sitk.Image]) -> sitk.Image:
        """Segment a SimpleITK image (or one image per channel); the result has the input's geometry. A colour image
        (RGB, RGBA, as read from a PNG) is several channels, its components in order, as ``autoseg predict`` reads
        the file."""
        images = [image] if isinstance(image, sitk.Image) else list(image)
        first = images[0]
        for im in images[1:]:
            if im.GetSize() != first.GetSize():
                raise AutosegError(f"predict_image: channel sizes differ ({im.GetSize()} vs {first.GetSize()})")
        arrays = []
        for im in images:
            a = sitk.GetArrayFromImage(im)
            arrays += list(np.moveaxis(a, -1, 0)) if im.GetNumberOfComponentsPerPixel() > 1 else [a]
        if len(arrays) != self.num_input_channels:
            raise AutosegError(f"predict_image: the images hold {len(arrays)} channel(s), the model expects "
                               f"{self.num_input_channels} ({', '.join(self.plans.channel_names.values())})")
        arr = np.stack(arrays) if len(arrays) > 1 else arrays[0]
        seg = self.predict(arr, first.GetSpacing(), first.GetOrigin(), first.GetDirection())
        out = sitk.GetImageFromArray(seg.astype(np.uint8 if seg.min() >= 0 and seg.max() < 256 else np.int16))
        out.CopyInformation(first)
        return out

    def _as_internal(self, arr: np.ndarray, spacing, origin, direction) -> tuple[np.ndarray, Geometry, tuple]:
        """(C, Z, Y, X) float32 data, its Geometry and the caller's spatial shape."""
        nch = self.num_input_channels
        if nch > 1 or arr.ndim == len(spacing) + 1:
            if arr.ndim != len(spacing) + 1 or arr.shape[0] != nch:
                raise AutosegError(f"predict: the model expects {nch} channel(s) first and {len(spacing)} spatial "
                                   f"axes (from the spacing), got an array of shape {arr.shape}")
            data = arr
        else:
            data = arr[None]
        spatial = tuple(data.shape[1:])
        dim = len(spatial)
        if dim not in (2, 3) or len(spacing) != dim:
            raise AutosegError(f"predict: {len(spacing)} spacing value(s) for an image with spatial shape {spatial}; "
                               "give one per axis in (x, y[, z]) order")
        if not np.isfinite(data).all():
            raise AutosegError("predict: the image contains NaN or inf values")
        sp = tuple(float(s) for s in spacing)
        if min(sp) <= 0:
            raise AutosegError(f"predict: spacing {sp} must be positive")
        origin = tuple(float(v) for v in (origin if origin is not None else (0.0,) * dim))
        direction = tuple(float(v) for v in (direction if direction is not None else np.eye(dim).ravel()))
        if len(origin) != dim or len(direction) != dim * dim:
            raise AutosegError(f"predict: origin needs {dim} values and direction {dim * dim}")
        if dim == 2:
            data = data[:, None]
            zyx = (DUMMY_2D_SPACING, sp[1], sp[0])
        else:
            zyx = (sp[2], sp[1], sp[0])
        geom = Geometry(dim, tuple(int(v) for v in data.shape[1:]), zyx, sp, origin, direction)
        return data.astype(np.float32, copy=False), geom, spatial

    @torch.inference_mode()
    def target_probabilities(self, data: np.ndarray | list, geom: Geometry) -> tuple[torch.Tensor, dict]:
        """Mean softmax of the folds on the preprocessed (target-spacing, transposed) grid, and the properties.

        ``data`` may be a one-element list holding the image: it is emptied once the image is preprocessed, so
        that the original-resolution image is not kept through the sliding window (see predict_files). A cascade
        stage adds the first stage's segmentation as one-hot channels."""
        cfg = self.plans.configuration(self.config)
        image = data.pop() if isinstance(data, list) else data
        pre, _, props = preprocess_image(image, geom, self.plans, cfg)
        if self.previous is not None:
            pre = np.concatenate([pre, self._previous_stage_channels(image, geom, pre.shape[1:])])
        del image
        x = torch.from_numpy(pre)
        spec = self.plans.label_spec
        probs = None
        for net in self.networks:
            logits = sliding_window_logits(net, x, cfg.patch_size, self.plans.num_classes, self.step, self.mirror,
                                           self.tile_batch, self.device,
                                           autocast=autocast_dtype(self.device, plan_precision(cfg)))
            p = _softmax_(logits) if not spec.has_regions else spec.probabilities(logits)  # sigmoid per region
            probs = p if probs is None else probs.add_(p)
        del x, pre
        return probs.div_(len(self.networks)), props

    def _previous_stage_channels(self, data: np.ndarray, geom: Geometry, shape) -> np.ndarray:
        """The first stage's segmentation on this stage's grid, one-hot (the cascade's extra input channels)."""
        from ..preprocessing.cascade import one_hot, to_next_stage

        first = self.previous
        grid, props = first.target_probabilities(data, geom)
        rp = first.plans.configuration(first.config).resampling_probabilities
        seg = to_next_stage(grid.numpy(), props, self.plans.configuration(self.config), rp)
        if tuple(seg.shape) != tuple(shape):
            raise AutosegError(f"{first.config} predicts on a grid {seg.shape} that does not resample to "
                               f"{self.config}'s {tuple(shape)}; the plans of the two stages disagree")
        return one_hot(seg, self.plans.num_classes)

    def probabilities(self, data: np.ndarray | list, geom: Geometry,
                      grid_sink: Callable[[np.ndarray, dict], None] | None = None) -> tuple[np.ndarray, dict]:
        """Class (or region) probabilities (K, *cropped original grid, transposed back) and the properties;
        ``grid_sink`` also receives them on the preprocessed grid (the cascade keeps them for its next stage)."""
        cfg = self.plans.configuration(self.config)
        probs, props = self.target_probabilities(data, geom)
        if grid_sink is not None:
            grid_sink(probs.numpy(), props)
        rp = cfg.resampling_probabilities
        probs = resample_probabilities(probs.numpy(), props["shape_after_crop_transposed"], rp["order"],
                                       order_z=rp["order_z"], normalise=not self.plans.label_spec.has_regions,
                                       **_back_to_case(props))
        bwd = self.plans.transpose_backward
        return probs.transpose([0] + [a + 1 for a in bwd]), props

    def segment(self, data: np.ndarray | list, geom: Geometry, keep_probabilities: bool = True,
                grid_sink: Callable[[np.ndarray, dict], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """(label map on the full original grid, probabilities on the cropped grid or None, properties).

        Without ``keep_probabilities`` the classes are resampled one at a time into a running argmax, so the
        probabilities are never held at the original resolution (K times the image); region outputs are
        thresholded, so they are always resampled whole."""
        spec = self.plans.label_spec
        if keep_probabilities or spec.has_regions or grid_sink is not None:
            probs, props = self.probabilities(data, geom, grid_sink)
            seg = spec.segment(probs)  # argmax, or regions over 0.5 in regions_class_order
        else:
            cfg = self.plans.configuration(self.config)
            tprobs, props = self.target_probabilities(data, geom)
            rp = cfg.resampling_probabilities
            idx = resampled_argmax(tprobs.numpy(), props["shape_after_crop_transposed"], rp["order"],
                                   order_z=rp["order_z"], **_back_to_case(props)
                                   ).transpose(self.plans.transpose_backward)
            values = np.array([v for v in spec.label_values if v != spec.ignore_label], dtype=np.int16)
            seg, probs = values[idx], None
        seg = uncrop(seg, props["bbox"], geom.shape, fill=0)
        if self.lcc_labels:
            seg = apply_postprocessing(seg, self.lcc_labels)
        return seg, probs, props

    def segment_full_grid(self, data: np.ndarray, geom: Geometry, with_probabilities: bool = True
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """(label map, probabilities float32 or None), both on the image's full grid. An ensemble averages its
        members' probabilities there, then takes the argmax (regions: thresholds) and its postprocessing."""
        if self.members:
            probs = mean_full_probabilities(self.members, data, geom)
            seg = self.plans.label_spec.segment(probs)  # argmax, or regions in regions_class_order
            if self.lcc_labels:
                seg = apply_postprocessing(seg, self.lcc_labels)
            return seg, probs
        seg, probs, props = self.segment(data, geom)
        return seg, self._on_full_grid(probs, props, geom, np.float32) if with_probabilities else None

    def full_probabilities(self, data: np.ndarray, geom: Geometry) -> np.ndarray:
        """Class (or region) probabilities on the image's own full grid (float16); outside the crop box the
        background has probability 1 (every region 0). Configurations with other spacings meet here, so ensembles
        average these."""
        probs, props = self.probabilities(data, geom)
        return self._on_full_grid(probs, props, geom, np.float16)

    def _on_full_grid(self, probs: np.ndarray, props: dict, geom: Geometry, dtype) -> np.ndarray:
        """Cropped-grid probabilities put back on the full grid: outside the crop box the background has
        probability 1 (region probabilities are 0 there, all of them)."""
        full = uncrop(probs.astype(dtype), props["bbox"], geom.shape, fill=0)
        if not self.plans.label_spec.has_regions:
            full[0][full.sum(0) == 0] = 1
        return full

    def read_checked(self, image_files: list[Path], case: str) -> tuple[np.ndarray, Geometry]:
        """The case's channels read, and checked as ``check_input`` checks them."""
        data, geom = read_case_images(image_files, case, self.num_input_channels)
        self.check_input(data, geom, f"case {case}", str(image_files[0]))
        return data, geom

    def check_input(self, data: np.ndarray, geom: Geometry, where: str, what: str) -> None:
        """The checks every input gets before anything is allocated for it, a file as an array given to
        ``predict``: a 2D image refused by a 3D configuration, a spacing far outside the training range warned
        about, and the memory its prediction needs against what there is (every member of an ensemble, every stage
        of a cascade). ``where`` opens the messages ("case c1", "predict"), ``what`` names the image."""
        for m in self.members or [self]:
            if geom.dimension == 2 and m.plans.configuration(m.config).dim == 3:
                raise AutosegError(f"{where}: {what} is a 2D image, but configuration {m.config} is 3D (it would be "
                                   "stretched into a volume); predict it with a 2d configuration")
        (self.members[0] if self.members else self).warn_spacing(geom, where)
        self.check_memory(data.shape, geom, where)

    def warn_spacing(self, geom: Geometry, where: str) -> None:
        """Say so when the image's spacing is far (SPACING_WARN_FACTOR) outside the training images' range: the
        network would see its structures at a scale it never learned (a header in metres, or a wrong unit), and
        the segmentation is likely wrong although nothing fails. A 2d configuration looks at the in-plane axes."""
        if self.train_spacing is None:
            return
        lo, hi = self.train_spacing
        fwd = self.plans.transpose_forward
        axes = fwd[1:] if self.plans.configuration(self.config).dim == 2 else fwd
        for a in axes:
            s = geom.spacing[a]
            factor = lo[a] / s if s < lo[a] else s / hi[a]
            if factor > SPACING_WARN_FACTOR:
                side = "finer" if s < lo[a] else "coarser"
                shown = geom.spacing[1:] if geom.dimension == 2 else geom.spacing  # a 2D image has no slice spacing
                print(f"warning: {where}: spacing {_mm(shown)} mm is {factor:.3g}x {side} than the "
                      f"training images ({lo[a]:.3g} to {hi[a]:.3g} mm on that axis); the segmentation is likely "
                      "wrong: check the spacing in the image's header", file=sys.stderr, flush=True)
                return

    def memory_needed(self, shape: tuple[int, ...], geom: Geometry) -> tuple[int, list[str]]:
        """Bytes a prediction of a (C, Z, Y, X) image needs at least on ``self.device``, and what makes them up:
        the image and the classes' summed logits on the resampled grid (float32), and one batch of tiles through
        the network (half of its feature maps: about two thirds are alive at once in an inference pass). On a GPU
        the image stays on the host and is not counted. The cascade's first stage runs before, on its own grid."""
        cfg = self.plans.configuration(self.config)
        fwd = self.plans.transpose_forward
        spacing_t = [geom.spacing[a] for a in fwd]
        target = target_spacing_for(cfg, spacing_t)
        grid = new_shape_for([shape[1:][a] for a in fwd], spacing_t, target)
        window = [1, *cfg.patch_size] if cfg.dim == 2 else list(cfg.patch_size)
        padded = [max(g, w) for g, w in zip(grid, window)]
        voxels = math.prod(padded)
        parts = [(4 * self.plans.num_classes * voxels,
                  f"{self.plans.num_classes} classes on a grid of {' x '.join(map(str, padded))} voxels, the image "
                  f"resampled from {_mm(spacing_t)} mm to {_mm(target)} mm")]
        if self.device.type == "cpu":
            channels = shape[0] + (self.plans.num_classes if self.previous is not None else 0)
            parts.append((4 * channels * voxels, f"{channels} input channel(s) on that grid"))
        costs = getattr(self.networks[0], "costs", None) if self.networks else None
        if costs is not None:
            batch = min(self.tile_batch, math.prod(math.ceil(p / w) for p, w in zip(padded, window)))
            parts.append((4 * batch * costs(list(cfg.patch_size)).feature_map_elements // 2,
                          f"{batch} tile(s) of {' x '.join(map(str, cfg.patch_size))} through the network"))
        return sum(b for b, _ in parts), [f"{_gb(b)} for {what}" for b, what in parts]

    def check_memory(self, shape: tuple[int, ...], geom: Geometry, where: str) -> None:
        """Refuse, before allocating, an image whose prediction needs more memory than the device has (e.g. a
        spacing of 500 mm resampled to 1.5 mm: 300 times more voxels per axis), saying what it needs and what
        there is, instead of an allocation traceback or the kernel's out-of-memory kill."""
        if self.members:
            for m in self.members:
                m.check_memory(shape, geom, where)
            return
        if self.previous is not None:
            self.previous.check_memory(shape, geom, where)
        free = available_memory(self.device)
        if free is None:
            return
        need, parts = self.memory_needed(shape, geom)
        if need > free:
            raise AutosegError(f"{where}: predicting it with {self.config} needs at least {_gb(need)} of memory "
                               f"({'; '.join(parts)}), but {_gb(free)} are available on {self.device}; check the "
                               "spacing in the image's header, or predict on a machine with more memory")

    def predict_files(self, image_files: list[Path], out_file: Path, save_probabilities: bool = False,
                      grid_sink: Callable[[np.ndarray, dict], None] | None = None) -> None:
        data, geom = self.read_checked(image_files, out_file.name[: -len(ending_of(out_file))])
        if self.members:
            seg, probs = self.segment_full_grid(data, geom)
            write_label(seg, geom, out_file)
            if save_probabilities:
                save_probabilities_npz(probs.astype(np.float16), self.output_names(), out_file)
            return
        holder = [data]  # handed over, so the image can be freed after preprocessing
        del data
        seg, probs, props = self.segment(holder, geom, keep_probabilities=save_probabilities, grid_sink=grid_sink)
        write_label(seg, geom, out_file)
        if save_probabilities:
            save_probabilities_npz(self._on_full_grid(probs, props, geom, np.float16), self.output_names(), out_file)

    def output_names(self) -> list:
        """What each probability channel is: region names, or label values (ignore has no channel)."""
        spec = self.plans.label_spec
        return spec.region_names if spec.has_regions else [v for v in spec.label_values if v != spec.ignore_label]


SPACING_WARN_FACTOR = 3.0
"""An image whose spacing is more than this factor outside the training images' range on an axis is warned about
(ACDC's in-plane spacings already span 0.7 to 1.9 mm; a header in metres is 1000x off)."""


def _training_spacing(ws: Workspace, plans: Plans) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(smallest, largest) spacing per axis (z, y, x) of the training images: from the run's fingerprint, else
    (an imported model) the plans' median spacing for both."""
    spacings = None
    if ws.fingerprint.is_file():
        try:
            spacings = np.asarray(load_json(ws.fingerprint)["spacings"], dtype=float)
        except (AutosegError, KeyError, TypeError, ValueError):
            spacings = None
    if spacings is None or spacings.ndim != 2 or spacings.shape[1] != 3 or not len(spacings):
        median = [0.0] * 3
        for i, a in enumerate(plans.transpose_forward):
            median[a] = float(plans.original_median_spacing_after_transp[i])
        spacings = np.asarray([median])
    return tuple(spacings.min(0).tolist()), tuple(spacings.max(0).tolist())


def _mm(spacing) -> str:
    return "(" + ", ".join(f"{s:.3g}" for s in spacing) + ")"


def _gb(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GB" if n >= 2 ** 28 else f"{n / 2 ** 20:.0f} MB"


def save_probabilities_npz(full: np.ndarray, labels: list[int], out_file: Path) -> None:
    """``<case>.npz`` beside ``out_file``: probabilities on the full original grid and the label values, written
    under a temporary name first."""
    stem = str(out_file)[: -len(ending_of(out_file))]

    def _w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, probabilities=full, labels=np.array(labels))

    atomic_write_bytes(stem + ".npz", _w)


def _back_to_case(props: dict) -> dict:
    """Resampling from the target grid back to the case's: decided per case, the target spacing looked at first."""
    return case_resampling(props["target_spacing"], props["spacing_transposed"])


def _softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis in place (a K-channel volume is the largest array of a prediction)."""
    logits = logits.float()
    logits -= torch.amax(logits, 0, keepdim=True)
    logits.exp_()
    logits /= logits.sum(0, keepdim=True)
    return logits


def discover_inputs(inp: Path, file_ending: str, num_channels: int, channel_names: list[str] | None = None
                    ) -> list[tuple[str, list[Path]]]:
    """[(case, image files)] for a folder in the nnU-Net layout (<case>_<file:04d><ending>) or a single file. A case
    is one file per channel or fewer files holding them all (one RGB PNG for an R, G, B model), the same way for
    every case of a folder."""
    names = list(channel_names) if channel_names else [str(i) for i in range(num_channels)]
    if inp.is_dir():
        present = case_files_in(inp, file_ending)
        if not present:
            raise AutosegError(f"{inp}: no images named <case>_0000{file_ending}")
        files_of, problems = {}, []
        for c in sorted(present):
            files, bad = case_channel_files(c, present[c], names, file_ending, "the model")
            problems += bad
            if files:
                files_of[c] = files
        problems += mixed_layout_problems(files_of, num_channels)
        if problems:
            raise AutosegError(f"{inp}: the input images do not fit the model:\n  " + "\n  ".join(problems))
        return [(c, files_of[c]) for c in sorted(files_of)]
    if not inp.is_file():
        raise AutosegError(f"{inp}: input not found")
    ending = ending_of(inp)
    stem = inp.name[: -len(ending)]
    m = re.match(r"^(.*)_(\d{4})$", stem)
    if m:
        case = m.group(1)
        files, bad = case_channel_files(case, case_files_in(inp.parent, ending).get(case, {}), names, ending,
                                        "the model")
        if bad:
            raise AutosegError(f"{inp}: " + "; ".join(bad))
        return [(case, files)]
    held = channels_in_file(inp)
    if num_channels != 1 and held != num_channels:
        raise AutosegError(f"{inp}: the model expects {num_channels} channels {names} and this file holds "
                           f"{held}; name the files <case>_0000{ending}, ... (one per channel) or give one file "
                           "holding them all (an RGB image for R, G, B)")
    return [(stem, [inp])]


def check_step(step: float) -> None:
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise AutosegError(f"--step {step}: the tile step must be a fraction of the patch in (0, 1], e.g. 0.5")


def _outputs_of(out_dir: Path, case: str, ending: str, save_probabilities: bool) -> list[Path]:
    outs = [out_dir / f"{case}{ending}"]
    return outs + [out_dir / f"{case}.npz"] if save_probabilities else outs


def _file_key(p: Path) -> list:
    st = p.stat()
    return [p.name, st.st_size, st.st_mtime_ns]


MANIFEST = "predict_manifest.json"


def _signature(ws: Workspace, pred: "Predictor", checkpoint: str, save_probabilities: bool) -> dict:
    """What the predictions depend on besides the input files: a rerun with the same one keeps finished cases."""
    ck = sorted(_file_key(p) for c in pred.configs for p in ws.config_dir(c).glob(f"fold_*/{checkpoint}"))
    return {"run": str(ws.root), "config": pred.config, "checkpoints": ck, "folds": len(pred.networks),
            "step": pred.step, "mirror": pred.mirror, "lcc": pred.lcc_labels, "probabilities": save_probabilities}


def predict_folder(ws: Workspace, inp: str | Path, out_dir: str | Path, config: str | list[str] | None = None,
            folds: list[str] | None = None, mirror: bool = True, step: float = 0.5,
            save_probabilities: bool = False, device: str = "auto",
            checkpoint: str = "checkpoint_final.pt",
            select: Callable[[list[tuple[str, list[Path]]]], list[tuple[str, list[Path]]]] | None = None,
            part: tuple[int, int] = (0, 1), use_postprocessing: bool = True) -> list[Path]:
    """Predict every case; outputs never replace inputs, the output folder is locked, and a rerun after an
    interruption keeps the cases already predicted with the same model and settings (recorded in
    predict_manifest.json after each case: a kill between a case's file and that record redoes only that case).
    ``select`` picks the cases to predict from the discovered inputs (sharding, --continue; autoseg.cluster);
    ``part`` (K, N) of a sharded prediction gives each part its own lock and manifest in the shared folder.
    ``config``: one configuration, several (an ensemble), or None for best.json's winner (or the only trained
    configuration). ``use_postprocessing`` False: no largest-component step, whatever was decided."""
    ws.require_plans()
    check_step(step)
    if not Path(inp).exists():
        raise AutosegError(f"{inp}: input not found (give an image file or a folder of <case>_0000 files)")
    plans = Plans.load(ws.plans)
    members, lcc = chosen_configurations(ws, plans, config)
    lcc = lcc if use_postprocessing else []
    inputs = discover_inputs(Path(inp), plans.file_ending if Path(inp).is_dir() else ending_of(inp),
                             plans.num_input_channels, list(plans.channel_names.values()))
    if select is not None:
        inputs = select(inputs)
        if not inputs:
            return []
    out_dir = Path(out_dir)
    planned = {case: _outputs_of(out_dir, case, ending_of(files[0]), save_probabilities) for case, files in inputs}
    tag = f".part{part[0]}of{part[1]}" if part[1] > 1 else ""
    manifest = out_dir / MANIFEST.replace(".json", f"{tag}.json")
    refuse_overwriting_inputs([o for outs in planned.values() for o in outs] + [manifest],
                              [f for _, files in inputs for f in files])
    for member in members:
        _refuse_2d_inputs_for_3d(plans, member, inputs)
    pred = Predictor.load(ws, members, folds, checkpoint, device, step, mirror, lcc, use_postprocessing)
    if resolve_device(device).type == "cpu":
        _threads_beside_other_work()
    with folder_lock(out_dir, "predict", name=f".autoseg{tag}.lock", clean_temps=not tag):
        return _predict_locked(ws, pred, inputs, out_dir, planned, checkpoint, save_probabilities, manifest)


def _threads_beside_other_work() -> None:
    """On a CPU, compute with the cores other processes leave free: beside a process that keeps both cores of a
    2-core machine busy, two threads run a network 3x slower than on an idle machine, one thread 1.3x
    (benchmarks/busy_threads.py)."""
    from ..core.allocator import keep_freed_memory
    from ..core.cpu_share import use_free_cores

    keep_freed_memory()
    use_free_cores(0.3, say=lambda line: print(line, flush=True), doing="predicting")


def _refuse_2d_inputs_for_3d(plans: Plans, config: str, inputs: list) -> None:
    """A 2D image given to a 3D configuration would be stretched into a volume (its dummy slice spacing)."""
    if plans.configuration(config).dim != 3:
        return
    for case, files in inputs:
        if dimension_of(files[0]) == 2:
            raise AutosegError(f"case {case}: {files[0]} is a 2D image, but configuration {config} is 3D (it would "
                               "be stretched into a volume); predict it with a 2d configuration")


def _predict_locked(ws: Workspace, pred: "Predictor", inputs: list, out_dir: Path, planned: dict,
                    checkpoint: str, save_probabilities: bool, man_path: Path) -> list[Path]:
    sig = json.loads(json.dumps(_signature(ws, pred, checkpoint, save_probabilities)))
    manifest = load_json(man_path) if man_path.is_file() else {}
    done = manifest.get("done", {}) if manifest.get("signature") == sig else {}
    written, timings, kept = [], [], 0
    for case, files in progress(inputs, desc=f"predict {pred.config} ({pred.folds_text} fold(s))"):
        outs = planned[case]
        keys = [_file_key(f) for f in files]
        if done.get(case) == keys and all(o.is_file() for o in outs):
            kept += 1
            written.append(outs[0])
            continue
        t0 = time.time()
        pred.predict_files(files, outs[0], save_probabilities)
        written.append(outs[0])
        timings.append(time.time() - t0)
        done[case] = keys
        save_json({"signature": sig, "done": done}, man_path)
        fault_point("predict_case_done")
    if kept:
        print(f"predict: {kept} case(s) already predicted with this model and settings were kept", flush=True)
    print(format_table(["cases", "config", "folds", "mirroring", "postprocessing (LCC labels)", "s/case (median)"],
                       [[len(written), pred.config, pred.folds_text, pred.mirror, pred.lcc_labels or "none",
                         f"{np.median(timings):.2f}" if timings else "-"]]), flush=True)
    return written


__all__ = ["Predictor", "predict_folder", "discover_inputs", "SUPPORTED_ENDINGS"]


def _prior_postprocessing(ws: Workspace, plans: Plans) -> list[int]:
    """A model trained on every case (-f all) has no cross-validation to decide its postprocessing from: keep the
    largest component of the labels that are one piece in the training references (the fingerprint counted them)."""
    if not ws.fingerprint.is_file():
        return []
    lcc = single_piece_labels(load_json(ws.fingerprint), plans.labels)
    if lcc:
        print(f"postprocessing: no cross-validation for fold 'all'; keeping the largest component of label(s) "
              f"{lcc}, one piece in at least {SINGLE_PIECE_SHARE:.0%} of the training references", flush=True)
    return lcc

