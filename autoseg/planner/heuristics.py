"""Planning rules as pure functions of the fingerprint (nnU-Net v2's rules, re-derived and documented).

Every function here is deterministic and free of I/O so that each rule can be tested from a table.
Arrays and spacings are in array order, coarse axis first after transposition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..networks.resenc import ResidualEncoderUNetArgs
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
LOWRES_MIN_VOXEL_RATIO = 2.0
"""3d_lowres is dropped unless the full-resolution median image has at least this many times its voxels."""


@dataclass(frozen=True)
class Preset:
    """What distinguishes nnU-Net's planners: network, memory reference, blocks, batch rules.

    ``reference_elements`` is the feature-map element count (see ``estimate_feature_map_elements``) that fits
    ``reference_gb`` of GPU memory at the reference batch (12 in 2D, 2 in 3D). The plain U-Net preset shrinks its
    patch only until a batch of 2 fits the reference; the residual-encoder presets shrink until the reference batch
    fits, and do not cap the batch by the dataset's size (``max_dataset_fraction`` 1).
    """
    name: str
    network_class_name: str
    reference_elements: dict
    reference_gb: float
    encoder_blocks: tuple[int, ...]
    decoder_convs: tuple[int, ...]
    max_dataset_fraction: float
    shrink_until_reference_batch: bool

    @property
    def residual(self) -> bool:
        return self.network_class_name == "ResidualEncoderUNet"


_RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
PRESETS = {
    "default": Preset("default", "PlainConvUNet", {2: 85_000_000, 3: 560_000_000}, 8.0, (2,) * 14, (2,) * 13,
                      MAX_DATASET_FRACTION_PER_BATCH, False),
    "resenc-m": Preset("resenc-m", "ResidualEncoderUNet", {2: 135_000_000, 3: 680_000_000}, 8.0, _RESENC_BLOCKS,
                       (1,) * 12, 1.0, True),
    "resenc-l": Preset("resenc-l", "ResidualEncoderUNet", {2: 380_000_000, 3: 2_100_000_000}, 24.0, _RESENC_BLOCKS,
                       (1,) * 12, 1.0, True),
    "resenc-xl": Preset("resenc-xl", "ResidualEncoderUNet", {2: 560_000_000, 3: 3_600_000_000}, 40.0,
                        _RESENC_BLOCKS, (1,) * 12, 1.0, True),
}
"""nnU-Net v2's ExperimentPlanner and nnUNetPlannerResEncM/L/XL; each preset's default GPU memory target is its
reference_gb (8, 8, 24, 40 GB)."""


def get_preset(name: str) -> Preset:
    from ..core.errors import AutosegError

    if name not in PRESETS:
        raise AutosegError(f"unknown planner preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Median spacing per axis, except for strongly anisotropic data.

    When one axis is coarser than ANISOTROPY_THRESHOLD x the *largest* other spacing (so 4 x 0.9 x 1.5 mm is not
    anisotropic: its slices are fewer than 3 in-plane voxels thick along one in-plane axis) *and* the images have
    few voxels along it,
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
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[others])
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


def separate_z_decision(current_spacing, target_spacing,
                        threshold: float = ANISOTROPY_THRESHOLD) -> tuple[bool, int | None]:
    """Whether (and along which axis) one case is resampled with the coarse axis handled separately (order 0
    along it, spline in-plane), decided per case as nnU-Net's preprocessing does.

    The case's own spacing is looked at first, then the target: if either is anisotropic (max/min > threshold),
    its coarsest axis is resampled separately, so thick slices are never interpolated with a cubic spline. When
    two or three axes tie for coarsest there is no single slice axis and the case is resampled jointly.
    """
    for sp in (np.asarray(current_spacing, float), np.asarray(target_spacing, float)):
        if sp.max() / sp.min() > threshold:
            axes = np.where(sp.max() / sp == 1)[0]
            return (True, int(axes[0])) if len(axes) == 1 else (False, None)
    return False, None


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


def estimate_feature_map_elements(patch_size, strides, features, num_classes: int, n_conv=2,
                                  deep_supervision: bool = False, n_conv_decoder=None,
                                  residual: bool = False) -> int:
    """Number of activation elements one sample produces in a forward pass of the U-Net.

    Counts every convolution's output in the encoder (for the residual encoder: its stem, both convolutions of
    each block and the strided blocks' 1x1 skip projections), the transposed convolutions and convolutions of the
    decoder, and the segmentation heads (all of them with deep supervision; nnU-Net's planner counts only the
    last). Training memory is roughly proportional to this (activations kept for backward), which is why the
    planner compares it with a reference count measured to fit a given GPU. ``n_conv`` / ``n_conv_decoder`` are
    convolutions (plain) or blocks (residual) per stage, an int or one value per stage. The count is the
    network's own (``UNetArgs.costs``: one derivation of the structure); kernel sizes do not change it.
    """
    n, dim = len(features), len(patch_size)
    enc = (n_conv,) * n if isinstance(n_conv, int) else tuple(n_conv)
    dec = enc[:n - 1] if n_conv_decoder is None else (
        (n_conv_decoder,) * (n - 1) if isinstance(n_conv_decoder, int) else tuple(n_conv_decoder))
    common = dict(dim=dim, input_channels=1, num_classes=num_classes, n_stages=n, features_per_stage=tuple(features),
                  kernel_sizes=((3,) * dim,) * n, strides=tuple(tuple(s) for s in strides),
                  n_conv_per_stage_decoder=dec, deep_supervision=deep_supervision)
    args = (ResidualEncoderUNetArgs(n_blocks_per_stage=enc, **common) if residual
            else PlainConvUNetArgs(n_conv_per_stage=enc, **common))
    return args.costs(patch_size).feature_map_elements


def memory_reference(dim: int, gpu_memory_gb: float, preset: Preset | None = None) -> float:
    """Feature-map elements that fit gpu_memory_gb at the reference batch (the preset's calibration, scaled)."""
    preset = preset or PRESETS["default"]
    return preset.reference_elements[dim] * gpu_memory_gb / preset.reference_gb


def initial_patch_size(spacing, median_shape) -> tuple[float, ...]:
    """A patch with the physical aspect ratio of the voxels (isotropic in mm), of a generous fixed volume,
    clipped to the median image shape; memory limits shrink it later."""
    dim = len(spacing)
    inv = 1.0 / np.asarray(spacing, float)
    scale = (INITIAL_PATCH_VOXELS[dim] / np.prod(inv)) ** (1.0 / dim)
    patch = [round(float(v)) for v in inv * scale]
    # the median may be a half voxel (even case counts): kept as float, padding may then add a pooling stage
    return tuple(min(p, m) for p, m in zip(patch, median_shape))


def axis_to_shrink(patch_size, median_shape) -> int:
    """The axis whose patch is largest relative to the median image; among ties the last one (nnU-Net's rule:
    with a square in-plane median the second in-plane axis is shortened first)."""
    ratios = [p / m for p, m in zip(patch_size, median_shape)]
    return len(ratios) - 1 - int(np.argmax(ratios[::-1]))


def fits_memory(estimate: float, dim: int, gpu_memory_gb: float, preset: Preset) -> bool:
    """When the patch may stop shrinking. Plain U-Net: once a batch of MIN_BATCH_SIZE fits the reference (a large
    2D image keeps its whole-image patch at batch 2 instead of being cut down to fit batch 12); residual presets:
    once the reference batch fits."""
    ref = memory_reference(dim, gpu_memory_gb, preset)
    if preset.shrink_until_reference_batch:
        return estimate <= ref
    return estimate / REFERENCE_BATCH[dim] * MIN_BATCH_SIZE <= ref


def topology_estimate(topo: Topology, dim: int, num_classes: int, preset: Preset) -> int:
    """Feature-map estimate of the preset's network for a topology."""
    n = topo.n_stages
    return estimate_feature_map_elements(topo.patch_size, topo.strides, features_per_stage(n, dim), num_classes,
                                         list(preset.encoder_blocks[:n]), n_conv_decoder=list(
                                             preset.decoder_convs[:n - 1]), residual=preset.residual)


def fit_patch(spacing, median_shape, num_classes: int, gpu_memory_gb: float,
              preset: Preset | None = None) -> tuple[Topology, int]:
    """Largest patch (starting from ``initial_patch_size``) whose activation estimate fits memory (``fits_memory``).

    While it does not fit, ``axis_to_shrink`` is shortened by its divisibility step (recomputed for the shorter
    patch, so that no valid size is skipped) and the topology is recomputed. Returns the topology and the estimate.
    """
    preset = preset or PRESETS["default"]
    dim = len(spacing)
    topo = network_topology(spacing, initial_patch_size(spacing, median_shape))
    while True:
        est = topology_estimate(topo, dim, num_classes, preset)
        if fits_memory(est, dim, gpu_memory_gb, preset):
            return topo, est
        axis = axis_to_shrink(topo.patch_size, median_shape)
        trial = list(topo.patch_size)
        trial[axis] -= topo.divisible_by[axis]
        step = network_topology(spacing, trial).divisible_by[axis]
        patch = list(topo.patch_size)
        patch[axis] -= step
        if patch[axis] < MIN_FEATURE_MAP_EDGE:  # cannot shrink further: the smallest sensible patch
            return topo, est
        topo = network_topology(spacing, patch)


def batch_size(estimate: int, dim: int, gpu_memory_gb: float, patch_size, dataset_voxels: float,
               preset: Preset | None = None) -> int:
    """Batch from memory headroom, capped so one batch covers at most the preset's fraction of the dataset's voxels
    (5% for the plain U-Net: avoids overfitting tiny datasets), and never below 2 (instance norm and Dice need more
    than one sample)."""
    preset = preset or PRESETS["default"]
    bs = round(memory_reference(dim, gpu_memory_gb, preset) / estimate * REFERENCE_BATCH[dim])
    cap = round(dataset_voxels * preset.max_dataset_fraction / float(np.prod(patch_size, dtype=np.float64)))
    return int(max(min(bs, cap), MIN_BATCH_SIZE))


NORMALIZATION_BY_CHANNEL_NAME = {"ct": "CTNormalization", "nonorm": "NoNormalization",
                                 "zscore": "ZScoreNormalization", "rescale_to_0_1": "RescaleTo01Normalization",
                                 "rgb_to_0_1": "RGBTo01Normalization"}


def normalization_scheme(channel_name: str) -> str:
    """CT intensities are calibrated (Hounsfield), so they get a global clip + z-score; "noNorm", "rgb_to_0_1" and
    "rescale_to_0_1" name their scheme; everything else gets a per-image z-score.

    Matching is exact up to case (as nnU-Net's): " CT", "none" and "rgb" are *not* recognised and get a z-score,
    so a dataset.json means the same thing to both tools.
    """
    return NORMALIZATION_BY_CHANNEL_NAME.get(channel_name.casefold(), "ZScoreNormalization")


def use_mask_for_norm(scheme: str, median_relative_size_after_crop: float) -> bool:
    """Normalise only inside the nonzero region when cropping to it removed more than a quarter of the image
    (e.g. skull-stripped brain MRI): the zero background would otherwise dominate the statistics."""
    return scheme == "ZScoreNormalization" and median_relative_size_after_crop < NONZERO_MASK_THRESHOLD


def lowres_warranted(fullres_patch, median_shape) -> bool:
    """A low-resolution 3D configuration only helps when the full-resolution patch sees less than a quarter of the
    median image, i.e. when the network would otherwise lack context."""
    return float(np.prod(fullres_patch)) / float(np.prod(median_shape)) < LOWRES_CREATION_THRESHOLD


def keep_lowres(fullres_median_shape, lowres_median_shape) -> bool:
    """A 3d_lowres whose median image is less than LOWRES_MIN_VOXEL_RATIO x smaller than full resolution adds
    little context for the cost of a second network (and of the cascade), so it is dropped."""
    full = float(np.prod(fullres_median_shape, dtype=np.float64))
    low = float(np.prod(lowres_median_shape, dtype=np.float64))
    return full / low >= LOWRES_MIN_VOXEL_RATIO


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
