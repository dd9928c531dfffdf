"""Planning rules as pure functions of the fingerprint (nnU-Net v2's rules, re-derived and documented).

Every function here is deterministic and free of I/O so that each rule can be tested from a table.
Arrays and spacings are in array order, coarse axis first after transposition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..networks.unet import PlainConvUNetArgs

ANISOTROPY_THRESHOLD = 3.0
"""An axis whose spacing is more than this many times the finest is treated as the coarse (slice) axis."""

BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
MIN_FEATURE_MAP_EDGE = 4
# Reference feature-map element counts that fit a GPU with REFERENCE_GB of memory at the reference batch size
# (nnU-Net's calibration of its plain U-Net; our estimator counts the same tensors, see estimate_feature_map_elements).
REFERENCE_ELEMENTS = {2: 85_000_000, 3: 560_000_000}
REFERENCE_BATCH = {2: 12, 3: 2}
REFERENCE_GB = 8.0
MIN_BATCH_SIZE = 2
MAX_DATASET_FRACTION_PER_BATCH = 0.05
LOWRES_CREATION_THRESHOLD = 0.25
LOWRES_SPACING_STEP = 1.03
NONZERO_MASK_THRESHOLD = 0.75
INITIAL_PATCH_VOXELS = {2: 2048 ** 2, 3: 256 ** 3}


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Median spacing per axis, except for strongly anisotropic data.

    When one axis is coarser than ANISOTROPY_THRESHOLD x the finest *and* the images have few voxels along it,
    resampling to the median would interpolate many invented slices; the 10th percentile of that axis's spacing is
    used instead (no finer than the other axes), which keeps most images near their own resolution.
    """
    spacings = np.asarray(spacings, float)
    shapes = np.asarray(shapes, float)
    target = np.median(spacings, 0)
    target_size = np.median(shapes, 0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    if not others:
        return target
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * min(target[others])
    aniso_voxels = target_size[worst] * ANISOTROPY_THRESHOLD < min(target_size[others])
    if aniso_spacing and aniso_voxels:
        coarse = np.percentile(spacings[:, worst], 10)
        if coarse < max(target[others]):
            coarse = max(max(target[others]), coarse) + 1e-5
        target[worst] = coarse
    return target


def transpose_axes(spacing: np.ndarray) -> tuple[list[int], list[int]]:
    """Axis order that puts the coarsest axis first (others keep their order); and its inverse."""
    spacing = np.asarray(spacing)
    worst = int(np.argmax(spacing))
    forward = [worst] + [i for i in range(len(spacing)) if i != worst]
    backward = [int(i) for i in np.argsort(forward)]
    return forward, backward


def is_anisotropic(spacing) -> bool:
    """True when resampling should treat the coarse axis separately (order 0 along it)."""
    spacing = np.asarray(spacing, float)
    return bool(spacing.max() / spacing.min() > ANISOTROPY_THRESHOLD)


@dataclass(frozen=True)
class Topology:
    pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]  # one per stage; the first is all ones
    kernel_sizes: tuple[tuple[int, ...], ...]  # one per stage
    patch_size: tuple[int, ...]  # padded to be divisible
    divisible_by: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def network_topology(spacing, patch_size, min_edge: int = MIN_FEATURE_MAP_EDGE, max_pool: int = 999) -> Topology:
    """Pooling and kernel sizes from spacing and patch.

    An axis is downsampled at a stage only if (a) its feature map is at least 2 * min_edge long and (b) its current
    spacing is within 2x of the finest current spacing among the poolable axes; this gives in-plane-only pooling for
    thick slices until the in-plane resolution has caught up. A lone poolable axis is only pooled while it is at
    least 3 * min_edge. Convolutions use kernel 1 along an axis until its spacing is within 2x of the finest, then 3.
    The bottleneck always uses kernel 3. The patch is padded up to a multiple of 2**pools per axis.
    """
    dim = len(spacing)
    cur_spacing = [float(s) for s in spacing]
    cur_size = [float(s) for s in patch_size]
    kernel = [1] * dim
    pools = [0] * dim
    strides: list[tuple[int, ...]] = [tuple([1] * dim)]
    kernels: list[tuple[int, ...]] = []
    while True:
        candidates = [i for i in range(dim) if cur_size[i] >= 2 * min_edge and pools[i] < max_pool]
        if not candidates:
            break
        finest = min(cur_spacing[i] for i in candidates)
        candidates = [i for i in candidates if cur_spacing[i] / finest < 2]
        if len(candidates) == 1 and cur_size[candidates[0]] < 3 * min_edge:
            break
        if not candidates:
            break
        finest_all = min(cur_spacing)
        for d in range(dim):
            if kernel[d] != 3 and cur_spacing[d] / finest_all < 2:
                kernel[d] = 3
        kernels.append(tuple(kernel))
        stride = [1] * dim
        for d in candidates:
            stride[d] = 2
            pools[d] += 1
            cur_spacing[d] *= 2
            cur_size[d] = np.ceil(cur_size[d] / 2)
        strides.append(tuple(stride))
    kernels.append(tuple([3] * dim))
    divisible = tuple(2 ** p for p in pools)
    padded = tuple(int(np.ceil(s / d) * d) for s, d in zip(patch_size, divisible))
    return Topology(tuple(pools), tuple(strides), tuple(kernels), padded, divisible)


def features_per_stage(n_stages: int, dim: int, base: int = BASE_FEATURES, cap: int | None = None) -> tuple[int, ...]:
    cap = cap if cap is not None else MAX_FEATURES[dim]
    return tuple(min(base * 2 ** i, cap) for i in range(n_stages))


def estimate_feature_map_elements(patch_size, strides, features, num_classes: int, n_conv: int = 2,
                                  deep_supervision: bool = True) -> int:
    """Number of activation elements one sample produces in a forward pass of the plain U-Net.

    Counts every convolution's output in the encoder, the transposed convolutions and convolutions of the decoder,
    and the segmentation heads. Training memory is roughly proportional to this (activations kept for backward),
    which is why the planner compares it with a reference count measured to fit a given GPU. The count is the
    network's own (``UNetArgs.costs``); kernel sizes do not change it.
    """
    n, dim = len(strides), len(patch_size)
    args = PlainConvUNetArgs(
        dim=dim, input_channels=1, num_classes=num_classes, n_stages=n, features_per_stage=tuple(features),
        kernel_sizes=((3,) * dim,) * n, strides=tuple(tuple(s) for s in strides), n_conv_per_stage=(n_conv,) * n,
        n_conv_per_stage_decoder=(n_conv,) * (n - 1), deep_supervision=deep_supervision)
    return args.costs(patch_size).feature_map_elements


def memory_reference(dim: int, gpu_memory_gb: float) -> float:
    return REFERENCE_ELEMENTS[dim] * gpu_memory_gb / REFERENCE_GB


def initial_patch_size(spacing, median_shape) -> tuple[int, ...]:
    """A patch with the physical aspect ratio of the voxels (isotropic in mm), of a generous fixed volume,
    clipped to the median image shape; memory limits shrink it later."""
    dim = len(spacing)
    inv = 1.0 / np.asarray(spacing, float)
    scale = (INITIAL_PATCH_VOXELS[dim] / np.prod(inv)) ** (1.0 / dim)
    patch = np.round(inv * scale).astype(int)
    return tuple(int(v) for v in np.minimum(patch, np.asarray(median_shape, int)))


def fit_patch(spacing, median_shape, num_classes: int, gpu_memory_gb: float) -> tuple[Topology, int]:
    """Largest patch (starting from ``initial_patch_size``) whose activation estimate fits the memory reference.

    While the estimate is too large, the axis whose patch is largest relative to the median image is shortened by
    its divisibility step and the topology is recomputed. Returns the topology and the estimate.
    """
    dim = len(spacing)
    patch = list(initial_patch_size(spacing, median_shape))
    topo = network_topology(spacing, patch)
    ref = memory_reference(dim, gpu_memory_gb)
    while True:
        feats = features_per_stage(topo.n_stages, dim)
        est = estimate_feature_map_elements(topo.patch_size, topo.strides, feats, num_classes)
        if est <= ref:
            return topo, est
        ratios = [p / m for p, m in zip(topo.patch_size, median_shape)]
        axis = int(np.argmax(ratios))
        trial = list(topo.patch_size)
        trial[axis] -= topo.divisible_by[axis]
        step = network_topology(spacing, trial).divisible_by[axis]
        patch = list(topo.patch_size)
        patch[axis] -= step
        if patch[axis] < MIN_FEATURE_MAP_EDGE:  # cannot shrink further: the smallest sensible patch
            return topo, est
        topo = network_topology(spacing, patch)


def batch_size(estimate: int, dim: int, gpu_memory_gb: float, patch_size, dataset_voxels: float) -> int:
    """Batch from memory headroom, capped so one batch covers at most 5% of the dataset's voxels (avoids
    overfitting tiny datasets), and never below 2 (instance norm and Dice need more than one sample)."""
    bs = round(memory_reference(dim, gpu_memory_gb) / estimate * REFERENCE_BATCH[dim])
    cap = round(dataset_voxels * MAX_DATASET_FRACTION_PER_BATCH / float(np.prod(patch_size)))
    return int(max(min(bs, cap), MIN_BATCH_SIZE))


def normalization_scheme(channel_name: str) -> str:
    """CT intensities are calibrated (Hounsfield), so they get a global clip + z-score; everything else a
    per-image z-score."""
    name = channel_name.strip().lower()
    if name == "ct":
        return "CTNormalization"
    if name in ("noNorm".lower(), "none"):
        return "NoNormalization"
    if name in ("rgb", "rgb_to_0_1"):
        return "RGBTo01Normalization"
    return "ZScoreNormalization"


def use_mask_for_norm(scheme: str, median_relative_size_after_crop: float) -> bool:
    """Normalise only inside the nonzero region when cropping to it removed more than a quarter of the image
    (e.g. skull-stripped brain MRI): the zero background would otherwise dominate the statistics."""
    return scheme == "ZScoreNormalization" and median_relative_size_after_crop < NONZERO_MASK_THRESHOLD


def lowres_warranted(fullres_patch, median_shape) -> bool:
    """A low-resolution 3D configuration only helps when the full-resolution patch sees less than a quarter of the
    median image, i.e. when the network would otherwise lack context."""
    return float(np.prod(fullres_patch)) / float(np.prod(median_shape)) < LOWRES_CREATION_THRESHOLD


def next_lowres_spacing(spacing) -> np.ndarray:
    """One step coarser: grow the finer axes first until they are within 2x of the coarsest, then all axes."""
    spacing = np.array(spacing, float)
    mx = spacing.max()
    fine = mx / spacing > 2
    if fine.any():
        spacing[fine] *= LOWRES_SPACING_STEP
    else:
        spacing *= LOWRES_SPACING_STEP
    return spacing
