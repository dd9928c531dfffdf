"""Training augmentation from batchgenerators, composed per configuration.

Spatial (rotation, scaling) first on a patch larger than the network's so that rotated corners hold real data,
then intensity transforms, then mirroring. For anisotropic 3D the spatial transform runs in-plane only
("dummy 2D": slices are folded into channels), since rotating across 10 mm slices would invent anatomy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

from ...core.registry import Registry

SCALE_RANGE = (0.7, 1.4)


def rotation_range(dim: int, dummy_2d: bool) -> float:
    """Half-width of the rotation range in radians: full circle in-plane for 2D data, 30 degrees in 3D."""
    return np.pi if (dim == 2 or dummy_2d) else np.pi / 6


def _rotated_extent(h: float, w: float, rot: float) -> tuple[float, float]:
    """Largest bounding box of an h x w rectangle rotated by any angle in [0, rot]."""
    angles = np.linspace(0, min(rot, np.pi / 2), 46)
    return (max(h * np.cos(a) + w * np.sin(a) for a in angles), max(w * np.cos(a) + h * np.sin(a) for a in angles))


def enlarged_patch_size(patch_size, dim: int, dummy_2d: bool) -> list[int]:
    """Patch to cut before the spatial transform: big enough that any planned rotation and down-scaling of the
    final patch stays inside it (bounding box of the rotated patch, divided by the smallest scale)."""
    p = [float(v) for v in patch_size]
    rot = rotation_range(dim, dummy_2d)
    if dim == 2 or dummy_2d:
        p[-2], p[-1] = _rotated_extent(p[-2], p[-1], rot)
    else:  # rotations about each axis in turn
        for a, b in ((1, 2), (0, 2), (0, 1)):
            p[a], p[b] = _rotated_extent(p[a], p[b], rot)
    first_spatial = 1 if (dim == 3 and dummy_2d) else 0
    out = p[:first_spatial] + [v / SCALE_RANGE[0] for v in p[first_spatial:]]
    return [int(np.ceil(v)) for v in out]


class FoldSlicesIntoChannels(AbstractTransform):
    """(B, C, Z, Y, X) -> (B, C*Z, Y, X) so a 2D spatial transform treats each slice alike."""

    def __call__(self, **d):
        for key in ("data", "seg"):
            x = d[key]
            d[key + "_shape"] = x.shape
            d[key] = x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
        return d


class UnfoldSlicesFromChannels(AbstractTransform):
    def __call__(self, **d):
        for key in ("data", "seg"):
            b, c, z = d.pop(key + "_shape")[:3]
            x = d[key]
            d[key] = x.reshape(b, c, z, *x.shape[2:])
        return d


def training_transforms(patch_size, dim: int, dummy_2d: bool) -> Compose:
    rot = rotation_range(dim, dummy_2d)
    spatial_patch = list(patch_size[1:]) if (dim == 3 and dummy_2d) else list(patch_size)
    three_d_rot = dim == 3 and not dummy_2d
    ts: list[AbstractTransform] = []
    if dummy_2d:
        ts.append(FoldSlicesIntoChannels())
    ts.append(SpatialTransform(
        spatial_patch, patch_center_dist_from_border=None, do_elastic_deform=False,
        do_rotation=True, angle_x=(-rot, rot), angle_y=(-rot, rot) if three_d_rot else (0, 0),
        angle_z=(-rot, rot) if three_d_rot else (0, 0), p_rot_per_axis=1,
        do_scale=True, scale=SCALE_RANGE, border_mode_data="constant", border_cval_data=0, order_data=3,
        border_mode_seg="constant", border_cval_seg=0, order_seg=1, random_crop=False,
        p_el_per_sample=0, p_scale_per_sample=0.2, p_rot_per_sample=0.2, independent_scale_for_each_axis=False))
    if dummy_2d:
        ts.append(UnfoldSlicesFromChannels())
    ts += [
        GaussianNoiseTransform(p_per_sample=0.1),
        GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=0.15),
        ContrastAugmentationTransform(p_per_sample=0.15),
        SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5,
                                       order_downsample=0, order_upsample=3, p_per_sample=0.25,
                                       ignore_axes=(0,) if dummy_2d else None),
        GammaTransform((0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True, p_per_sample=0.1),
        GammaTransform((0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True, p_per_sample=0.3),
        MirrorTransform(tuple(range(dim))),
    ]
    return Compose(ts)


# --- augmentation pipelines by name: `train --augmentation NAME`; plugins register more ---

@dataclass(frozen=True)
class AugmentationPipeline:
    """``sample_size(patch, dim, dummy_2d)``: the size of the patch cut from a case (larger than the network's
    patch when a spatial transform crops it back); ``transforms(patch, dim, dummy_2d)``: a batchgenerators-style
    callable ``(**{"data", "seg"}) -> dict`` that returns the network's patch size, or None for none."""
    sample_size: Callable[[list[int], int, bool], list[int]]
    transforms: Callable[[list[int], int, bool], Any]


AUGMENTATIONS: Registry[AugmentationPipeline] = Registry("augmentation")


def register_augmentation(name: str, pipeline: AugmentationPipeline) -> AugmentationPipeline:
    return AUGMENTATIONS.register(name, pipeline)


register_augmentation("default", AugmentationPipeline(enlarged_patch_size, training_transforms))
register_augmentation("none", AugmentationPipeline(lambda patch, dim, dummy_2d: list(patch),
                                                   lambda patch, dim, dummy_2d: None))
