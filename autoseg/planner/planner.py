"""Turn a fingerprint into plans: which configurations, at what spacing, patch, batch and topology, and why."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..io.dataset import DatasetInfo
from ..io.images import DUMMY_2D_SPACING
from ..utils import format_table
from . import heuristics as H
from .plans import PLANS_VERSION, Architecture, ConfigurationPlan, Plans


def _architecture(dim: int, topo: H.Topology, num_channels: int, num_classes: int) -> Architecture:
    feats = H.features_per_stage(topo.n_stages, dim)
    return Architecture("PlainConvUNet", {
        "dim": dim, "input_channels": num_channels, "num_classes": num_classes, "n_stages": topo.n_stages,
        "features_per_stage": list(feats), "kernel_sizes": [list(k) for k in topo.kernel_sizes],
        "strides": [list(s) for s in topo.strides], "n_conv_per_stage": [2] * topo.n_stages,
        "n_conv_per_stage_decoder": [2] * (topo.n_stages - 1), "deep_supervision": True,
        "norm": "InstanceNorm", "nonlin": "LeakyReLU", "negative_slope": 0.01})


def plan_configuration(name: str, spacing, median_shape, dataset_voxels: float, num_channels: int,
                       num_classes: int, schemes: list[str], use_mask: list[bool], gpu_memory_gb: float,
                       anisotropic: bool, reasons: list[str]) -> ConfigurationPlan:
    dim = len(spacing)
    topo, est = H.fit_patch(spacing, median_shape, num_classes, gpu_memory_gb)
    bs = H.batch_size(est, dim, gpu_memory_gb, topo.patch_size, dataset_voxels)
    reasons = list(reasons)
    reasons.append(f"patch {list(topo.patch_size)} = median image {[int(round(m)) for m in median_shape]} "
                   f"limited by ~{est / 1e6:.0f}M activations vs {H.memory_reference(dim, gpu_memory_gb) / 1e6:.0f}M "
                   f"budget for {gpu_memory_gb:g} GB, padded to multiples of {list(topo.divisible_by)}")
    reasons.append(f"pools per axis {list(topo.pool_per_axis)}: an axis is pooled while its spacing is within 2x "
                   "of the finest and its feature map stays >= 4")
    reasons.append(f"batch {bs}: memory headroom, capped at 5% of the dataset's voxels, at least 2")
    sep = anisotropic and dim == 3
    return ConfigurationPlan(
        spacing=[float(s) for s in spacing],
        patch_size=[int(p) for p in topo.patch_size],
        batch_size=int(bs),
        median_image_size_in_voxels=[float(m) for m in median_shape],
        normalization_schemes=schemes,
        use_mask_for_norm=use_mask,
        resampling_data={"order": 3, "separate_z": sep, "order_z": 0},
        resampling_label={"order": 1, "separate_z": sep, "order_z": 0, "one_hot": True},
        resampling_probabilities={"order": 1, "separate_z": sep, "order_z": 0},
        architecture=_architecture(dim, topo, num_channels, num_classes),
        batch_dice=dim == 2,  # nnU-Net v2: 2d pools Dice over the batch; 3d_fullres only when there is a lowres
        reasons=reasons,
    )


def make_plans(ds: DatasetInfo, fp: dict, gpu_memory_gb: float = 8.0) -> Plans:
    spacings = np.array(fp["spacings"], float)
    shapes = np.array(fp["shapes_after_crop"], float)
    is_2d_data = bool(np.all(shapes[:, 0] == 1))
    num_classes = len(ds.labels)
    nch = ds.num_channels

    fullres_spacing = H.target_spacing(spacings, shapes)
    if is_2d_data:  # z is a dummy axis: keep it first, never transpose
        fwd, bwd = [0, 1, 2], [0, 1, 2]
    else:
        fwd, bwd = H.transpose_axes(fullres_spacing)
    sp_t = fullres_spacing[fwd]
    median_spacing_t = np.median(spacings, 0)[fwd]
    # median shape after resampling to the target spacing
    resampled = np.array([np.round(s * sp / fullres_spacing) for s, sp in zip(shapes, spacings)])
    median_shape_t = np.median(resampled, 0)[fwd]
    if is_2d_data:
        median_shape_t[0] = 1
    dataset_voxels = float(np.prod(median_shape_t)) * len(ds.cases)

    schemes = [H.normalization_scheme(ds.channel_names[str(c)]) for c in range(nch)]
    rel = fp["median_relative_size_after_crop"]
    use_mask = [H.use_mask_for_norm(s, rel) for s in schemes]
    anis = (not is_2d_data) and H.is_anisotropic(sp_t)
    norm_reason = ", ".join(f"channel {c} ({ds.channel_names[str(c)]}): {s}"
                            f"{' inside the nonzero mask' if m else ''}"
                            for c, (s, m) in enumerate(zip(schemes, use_mask)))
    base_reasons = [f"normalisation {norm_reason} (median size after crop {rel:.2f})"]
    spacing_reason = (f"target spacing {[round(float(s), 4) for s in sp_t]} mm (z first) = median per axis"
                      + ("; coarse axis from the 10th percentile (anisotropic: >3x and few slices)"
                         if not is_2d_data and not np.allclose(fullres_spacing, np.median(spacings, 0)) else ""))

    configs: dict[str, ConfigurationPlan] = {}
    configs["2d"] = plan_configuration(
        "2d", sp_t[1:], median_shape_t[1:], dataset_voxels, nch, num_classes, schemes, use_mask, gpu_memory_gb,
        False, base_reasons + [f"in-plane spacing {[round(float(s), 4) for s in sp_t[1:]]} mm = median; slices kept "
                        "at their own z spacing"])
    if not is_2d_data:
        full = plan_configuration(
            "3d_fullres", sp_t, median_shape_t, dataset_voxels, nch, num_classes, schemes, use_mask, gpu_memory_gb,
            anis, base_reasons + [spacing_reason] + (["anisotropic: coarse axis resampled separately (order 0)"]
                                                      if anis else []))
        configs["3d_fullres"] = full
        if H.lowres_warranted(full.patch_size, median_shape_t):
            lowres_spacing = sp_t.copy()
            plan = full
            for _ in range(200):
                lowres_spacing = H.next_lowres_spacing(lowres_spacing)
                lshape = sp_t / lowres_spacing * median_shape_t
                plan = plan_configuration(
                    "3d_lowres", lowres_spacing, lshape, float(np.prod(lshape)) * len(ds.cases), nch, num_classes,
                    schemes, use_mask, gpu_memory_gb, H.is_anisotropic(lowres_spacing),
                    base_reasons + [f"3d_lowres: full-res patch covers only "
                                    f"{np.prod(full.patch_size) / np.prod(median_shape_t):.0%} of the median image"])
                if not H.lowres_warranted(plan.patch_size, lshape):
                    break
            configs["3d_lowres"] = dataclasses.replace(plan, batch_dice=False)
            configs["3d_fullres"] = dataclasses.replace(full, batch_dice=True)

    return Plans(
        plans_version=PLANS_VERSION, dataset_name=ds.name, dataset_dir=str(ds.root), num_input_channels=nch,
        labels=dict(ds.labels), channel_names=dict(ds.channel_names), file_ending=ds.file_ending,
        transpose_forward=[int(i) for i in fwd], transpose_backward=[int(i) for i in bwd],
        original_median_spacing_after_transp=[float(s) if s != DUMMY_2D_SPACING else s for s in median_spacing_t],
        original_median_shape_after_transp=[float(s) for s in median_shape_t],
        gpu_memory_target_gb=float(gpu_memory_gb),
        foreground_intensity_properties_per_channel=fp["foreground_intensity_properties_per_channel"],
        configurations=configs)


def plans_table(plans: Plans) -> str:
    rows = []
    for name, c in plans.configurations.items():
        a = c.architecture.arch_kwargs
        rows.append([name, [round(s, 4) for s in c.spacing], c.patch_size, c.batch_size, a["n_stages"],
                     f"{a['features_per_stage'][0]}..{a['features_per_stage'][-1]}",
                     "/".join("".join(map(str, k)) for k in a["kernel_sizes"]),
                     "/".join("".join(map(str, s)) for s in a["strides"][1:])])
    table = format_table(["config", "spacing (mm)", "patch", "batch", "stages", "features", "kernels",
                          "pooling"], rows)
    why = []
    for name, c in plans.configurations.items():
        why.append(f"{name}:")
        why.extend(f"  - {r}" for r in c.reasons)
        if c.budget is not None:
            why.append(f"  - {c.budget.summary()}")
    head = f"{plans.dataset_name}: planned for {plans.gpu_memory_target_gb:g} GB of GPU memory\n"
    return head + table + "\n\nwhy:\n" + "\n".join(why)
