"""Patch sampling from preprocessed cases and the background loader.

Batches are built in worker processes by a torch ``DataLoader`` over an ``IterableDataset``: when a worker fails,
torch re-raises the worker's own exception and traceback in the training process (no silent "background workers
are no longer alive"). Arrays are memory-mapped, so a worker reads only the patch it cuts.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ...core.errors import AutosegError
from .augmentation import AUGMENTATIONS


class PreprocessedCases:
    """Read access to ``run/preprocessed/<config>/`` for a list of cases."""

    def __init__(self, folder: Path, cases: list[str], previous_stage: Path | None = None):
        self.folder = Path(folder)
        self.cases = list(cases)
        self.previous_stage = previous_stage  # the cascade's first-stage predictions (<case>.npy), on this grid
        missing = [c for c in self.cases if not (self.folder / f"{c}.json").is_file()]
        if missing:
            raise AutosegError(f"{self.folder}: cases {missing[:5]}{'...' if len(missing) > 5 else ''} are not "
                               "preprocessed; run `autoseg preprocess RUN_DIR -c CONFIG`")
        self._props: dict[str, dict] = {}

    def props(self, case: str) -> dict:
        if case not in self._props:
            with open(self.folder / f"{case}.json") as f:
                self._props[case] = json.load(f)
        return self._props[case]

    def arrays(self, case: str) -> tuple[np.ndarray, np.ndarray]:
        data = np.load(self.folder / f"{case}.npy", mmap_mode="r")
        seg = np.load(self.folder / f"{case}_seg.npy", mmap_mode="r")
        return data, seg

    def previous(self, case: str, shape) -> np.ndarray | None:
        """The first stage's label map for the case (cascade only), checked against the image's grid."""
        if self.previous_stage is None:
            return None
        from ...preprocessing.cascade import check_next_stage_shape

        prev = np.load(self.previous_stage / f"{case}.npy", mmap_mode="r")
        check_next_stage_shape(prev, shape, case, self.previous_stage)
        return prev


def _crop_with_padding(arr: np.ndarray, lb: list[int], size: list[int]) -> np.ndarray:
    """Cut arr[..., lb:lb+size] per trailing axis; regions outside the array are zero."""
    nsp = len(size)
    shape = arr.shape[-nsp:]
    src, dst = [], []
    for lo, sz, sh in zip(lb, size, shape):
        a, b = max(lo, 0), min(lo + sz, sh)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - lo, a - lo + max(0, b - a)))
    out = np.zeros(arr.shape[:-nsp] + tuple(size), dtype=arr.dtype)
    out[(Ellipsis,) + tuple(dst)] = arr[(Ellipsis,) + tuple(src)]
    return out


@dataclass
class PatchSampler:
    """Cut patches of ``size`` (the enlarged pre-augmentation patch) from preprocessed cases.

    The spatial transform later keeps the centre ``final_size`` of each patch, so the cut is placed such that this
    final patch can lie anywhere in the image, touching any border: the enlarged patch may extend past the image by
    the margin it has around the final patch (or, where the image is smaller than the final patch, the image is
    centred). Without that margin a patch bigger than the image is always cut from the middle, and the network
    never learns what the image's periphery looks like.

    With ``force_fg`` the patch is centred on a random voxel of a random foreground class present in the case, which
    keeps rare structures in view; otherwise it is placed uniformly.
    """

    cases: PreprocessedCases
    size: list[int]
    dim: int
    final_size: list[int] | None = None

    def bounds(self, shape) -> list[tuple[int, int]]:
        """Per axis, the lowest and highest start of the enlarged patch."""
        final = self.final_size or self.size
        out = []
        for sh, sz, fz in zip(shape, self.size, final):
            pad = sz - fz
            if pad + sh < sz:  # the image is smaller than the final patch: centre it
                pad = sz - sh
            out.append((-(pad // 2), sh + pad // 2 + pad % 2 - sz))
        return out

    def sample(self, case: str, force_fg: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        data, seg = self.cases.arrays(case)
        prev = self.cases.previous(case, seg.shape)
        locs = self.cases.props(case)["class_locations"]
        center = None
        if force_fg:
            present = [k for k, v in locs.items() if len(v) > 0]
            if present:
                k = present[rng.integers(len(present))]
                center = locs[k][rng.integers(len(locs[k]))]
        if self.dim == 2:
            z = center[0] if center is not None else int(rng.integers(data.shape[1]))
            data, seg = data[:, z], seg[z]
            center = center[1:] if center is not None else None
        lb = []
        for i, ((lo, hi), sz) in enumerate(zip(self.bounds(data.shape[1:]), self.size)):
            if center is not None:
                lb.append(int(np.clip(center[i] - sz // 2, lo, hi)))
            else:
                lb.append(int(rng.integers(lo, hi + 1)))
        seg_out = _crop_with_padding(seg, lb, self.size)
        if prev is not None:  # the cascade: the first stage's labels ride along as a second label channel
            seg_out = np.stack([seg_out, _crop_with_padding(prev, lb, self.size)])
        return _crop_with_padding(data, lb, self.size), seg_out


class BatchStream(IterableDataset):
    """An endless stream of augmented batches. Each worker has its own seed derived from ``seed``."""

    def __init__(self, folder: Path, cases: list[str], patch_size: list[int], batch_size: int, dummy_2d: bool,
                 augment: bool, seed: int, oversample_fg: float = 1 / 3, previous_stage: Path | None = None,
                 num_classes: int = 0, augmentation: str = "default"):
        super().__init__()
        self.previous_stage, self.num_classes = previous_stage, num_classes
        self.folder, self.cases, self.patch_size = folder, list(cases), list(patch_size)
        self.batch_size, self.dummy_2d, self.augment, self.seed = batch_size, dummy_2d, augment, seed
        self.oversample_fg, self.augmentation = oversample_fg, augmentation
        if not self.cases:
            raise AutosegError(f"{folder}: no cases to train on")

    def __iter__(self):
        info = get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        np.random.seed(int(rng.integers(2 ** 31)))  # batchgenerators draws from numpy's global generator
        dim = len(self.patch_size)
        pipe = AUGMENTATIONS.get(self.augmentation) if self.augment else None  # a name: workers look it up
        cut = pipe.sample_size(self.patch_size, dim, self.dummy_2d) if pipe else self.patch_size
        cases = PreprocessedCases(self.folder, self.cases, self.previous_stage)
        sampler = PatchSampler(cases, cut, dim, self.patch_size)
        transforms = pipe.transforms(self.patch_size, dim, self.dummy_2d) if pipe else None
        n_fg = int(round(self.batch_size * self.oversample_fg))
        while True:
            data, seg = [], []
            for i in range(self.batch_size):
                case = self.cases[rng.integers(len(self.cases))]
                d, s = sampler.sample(case, force_fg=i >= self.batch_size - n_fg, rng=rng)
                data.append(d)
                seg.append(s if self.previous_stage is not None else s[None])
            batch = {"data": np.stack(data).astype(np.float32), "seg": np.stack(seg).astype(np.float32)}
            if transforms is not None:
                batch = transforms(**batch)
            if self.previous_stage is not None:
                batch = previous_stage_as_input(batch, self.num_classes)
            yield (torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32)),
                   torch.from_numpy(np.ascontiguousarray(np.round(batch["seg"]), dtype=np.int64)))


def previous_stage_as_input(batch: dict, num_classes: int) -> dict:
    """The cascade: the first stage's labels (moved and mirrored with the reference, untouched by the intensity
    transforms) leave the labels and join the image as one-hot channels, as nnU-Net's cascade data stream does."""
    from ...preprocessing.cascade import one_hot

    prev = np.round(batch["seg"][:, 1]).astype(np.int64)
    extra = np.stack([one_hot(p, num_classes) for p in prev])
    return {**batch, "data": np.concatenate([batch["data"], extra], 1), "seg": batch["seg"][:, :1]}


def _worker_init(worker_id: int) -> None:
    """A worker computes with one thread (the cores are the training process's) and leaves Ctrl-C to the training
    process, which saves a checkpoint and then ends the workers."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(stream: BatchStream, num_workers: int, pin_memory: bool) -> DataLoader:
    kw = {}
    if num_workers > 0:
        kw = {"prefetch_factor": 4, "persistent_workers": True, "worker_init_fn": _worker_init,
              "multiprocessing_context": "fork" if os.name == "posix" else None}
    return DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kw)
