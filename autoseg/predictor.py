"""Predict from Python: ``Predictor.from_run(RUN_DIR or MODEL.zip)`` then ``predict(array, ...)`` or
``predict_image(sitk_image)``.

This wraps the same inference code as ``autoseg predict`` (crop, normalise, resample, sliding window over the
folds, resample the probabilities back, argmax, uncrop, postprocess), so the labels are the CLI's, voxel for voxel.
Geometry follows SimpleITK: ``spacing``, ``origin`` and ``direction`` in (x, y[, z]) order, as ``image.GetSpacing()``
returns them; arrays in numpy order ((Z,) Y, X), as ``SimpleITK.GetArrayFromImage`` returns them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .io.images import DUMMY_2D_SPACING, Geometry
from .preprocessing.cropping import uncrop
from .utils import AutosegError


class Predictor:
    """A loaded model (one configuration or an ensemble of them, one or more folds each) that segments arrays and
    SimpleITK images."""

    def __init__(self, inner) -> None:
        # autoseg.inference.predictor.Predictor or .ensemble.EnsemblePredictor: networks already in memory
        self._inner = inner

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
        from .sharing.model_zip import extracted_model, is_model_zip

        if backend not in ("torch", "onnxruntime"):
            raise AutosegError(f"backend {backend!r}: choose 'torch' or 'onnxruntime'")
        args = (folds, device, configuration, mirror, step, backend)
        if is_model_zip(run_or_zip):
            with extracted_model(run_or_zip) as run_dir:
                return cls._load(run_dir, *args)
        if not Path(run_or_zip).is_dir():
            raise AutosegError(f"{run_or_zip}: neither a run folder nor a model .zip")
        return cls._load(Path(run_or_zip), *args)

    @classmethod
    def _load(cls, run_dir: Path, folds, device: str, configuration: str | Sequence[str] | None, mirror: bool,
              step: float, backend: str = "torch") -> "Predictor":
        from .inference.ensemble import EnsemblePredictor
        from .inference.predictor import Predictor as _Inner
        from .inference.predictor import _chosen_members
        from .planner.plans import Plans
        from .workspace import Workspace

        ws = Workspace.at(run_dir).require_plans()
        members, lcc = _chosen_members(ws, Plans.load(ws.plans), configuration)
        fold_names = None if not folds or list(folds) == ["all"] else [str(f) for f in folds]
        if len(members) > 1:
            if backend != "torch":
                raise AutosegError(f"backend {backend!r} runs one configuration; {'+'.join(members)} is an ensemble")
            return cls(EnsemblePredictor.from_run(ws, members, fold_names, "checkpoint_final.pt", device, step,
                                                  mirror, lcc))
        config = members[0]
        if backend == "onnxruntime":
            device = "cpu"
        inner = _Inner.from_run(ws, config, fold_names, device=device, step=step, mirror=mirror)
        if backend == "onnxruntime":
            from .inference.onnx_backend import OnnxNetwork
            from .sharing.onnx_export import ONNX_NAME

            folds_used = fold_names or sorted(p.parent.name[5:] for p in ws.config_dir(config).glob(
                "fold_*/checkpoint_final.pt"))
            inner.networks = [OnnxNetwork(ws.fold_dir(config, f) / ONNX_NAME) for f in folds_used]
        return cls(inner)

    @property
    def _plans(self):
        inner = self._inner
        return inner.members[0].plans if hasattr(inner, "members") else inner.plans

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._plans.labels)

    @property
    def configuration(self) -> str:
        """The configuration's name, or the ensemble's members joined by '+'."""
        return self._inner.config

    @property
    def num_input_channels(self) -> int:
        return self._plans.num_input_channels

    def predict(self, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float] | None = None,
                direction: Sequence[float] | None = None, return_probabilities: bool = False):
        """Label map of ``array`` ((Z,) Y, X, with a leading channel axis for multi-channel models).

        Returns the int16 label array of the image's shape, or (labels, probabilities (K, (Z,) Y, X) float32)
        with ``return_probabilities``; probabilities follow the sorted label values."""
        data, geom, spatial = self._as_internal(np.asarray(array), spacing, origin, direction)
        if hasattr(self._inner, "members"):  # an ensemble: its probabilities are already on the full grid
            seg, full = self._inner.segment(data, geom)
        else:
            seg, probs, props = self._inner.segment(data, geom)
            if return_probabilities:
                full = uncrop(probs.astype(np.float32), props["bbox"], geom.shape, fill=0)
                full[0][full.sum(0) == 0] = 1  # outside the crop box: background
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
                               f"{self.num_input_channels} ({', '.join(self._plans.channel_names.values())})")
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


__all__ = ["Predictor"]
