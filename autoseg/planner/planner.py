"""Turn a fingerprint into plans: which configurations, at what spacing, patch, batch and topology, and why."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..core.progress import format_table
from ..io.dataset import DatasetInfo
from . import heuristics as H
from .plans import PLANS_VERSION, Architecture, ConfigurationPlan, Plans


def _architecture(dim: int, topo: H.Topology, num_channels: int, num_classes: int,
                  preset: H.Preset) -> Architecture:
    n = topo.n_stages
    feats = H.features_per_stage(n, dim)
    blocks_key = "n_blocks_per_stage" if preset.residual else "n_conv_per_stage"
    return Architecture(preset.network_class_name, {
        "dim": dim, "input_channels": num_channels, "num_classes": num_classes, "n_stages": n,
        "features_per_stage": list(feats), "kernel_sizes": [list(k) for k in topo.kernel_sizes],
        "strides": [list(s) for s in topo.strides], blocks_key: list(preset.encoder_blocks[:n]),
        "n_conv_per_stage_decoder": list(preset.decoder_convs[:n - 1]), "deep_supervision": True,
        "norm": "InstanceNorm", "nonlin": "LeakyReLU", "negative_slope": 0.01})


def plan_configuration(name: str, spacing, median_shape, dataset_voxels: float, num_channels: int,
                       num_classes: int, schemes: list[str], use_mask: list[bool], gpu_memory_gb: float,
                       anisotropic: bool, reasons: list[str], preset: H.Preset | None = None) -> ConfigurationPlan:
    """One configuration: patch fitted to memory, batch from headroom, topology from spacing and patch."""
    preset = preset or H.PRESETS["default"]
    dim = len(spacing)
    topo, est = H.fit_patch(spacing, median_shape, num_classes, gpu_memory_gb, preset)
    bs = H.batch_size(est, dim, gpu_memory_gb, topo.patch_size, dataset_voxels, preset)
    ref = H.memory_reference(dim, gpu_memory_gb, preset)
    stop = (f"batch {H.REFERENCE_BATCH[dim]}" if preset.shrink_until_reference_batch
            else f"batch {H.MIN_BATCH_SIZE}")
    reasons = list(reasons)
    reasons.append(f"patch {list(topo.patch_size)}: the median image {[round(float(m), 1) for m in median_shape]}, "
                   f"shrunk only while {stop} does not fit: ~{est / 1e6:.0f}M activations per sample vs "
                   f"{ref / 1e6:.0f}M for batch {H.REFERENCE_BATCH[dim]} in {gpu_memory_gb:g} GB "
                   f"({preset.network_class_name}); padded to multiples of {list(topo.divisible_by)}")
    reasons.append(f"pools per axis {list(topo.pool_per_axis)}: an axis is pooled while its spacing is within 2x "
                   "of the finest and its feature map stays >= 4")
    reasons.append(f"batch {bs}: memory headroom, capped at {preset.max_dataset_fraction:.0%} of the dataset's "
                   "voxels, at least 2")
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
        architecture=_architecture(dim, topo, num_channels, num_classes, preset),
        batch_dice=dim == 2,  # nnU-Net v2: 2d pools Dice over the batch; 3d_fullres only when there is a lowres
        reasons=reasons,
    )


def _lowres(full: ConfigurationPlan, sp_t, median_shape_t, n_cases: int, common: dict,
            reasons: list[str]) -> ConfigurationPlan | None:
    """3d_lowres: coarsen the spacing step by step until the patch covers a quarter of the (coarser) median
    image; None when the full-resolution patch already does, or when the result is too close to full resolution
    (``H.keep_lowres``)."""
    if not H.lowres_warranted(full.patch_size, median_shape_t):
        return None
    spacing = np.array(sp_t, float)
    plan = full
    for _ in range(500):
        spacing = H.next_lowres_spacing(spacing)
        shape = np.asarray(sp_t) / spacing * median_shape_t
        plan = plan_configuration(
            "3d_lowres", spacing, tuple(round(float(v)) for v in shape), float(np.prod(shape)) * n_cases,
            anisotropic=H.is_anisotropic(spacing), reasons=reasons + [
                f"3d_lowres: full-res patch covers only {np.prod(full.patch_size) / np.prod(median_shape_t):.0%} "
                "of the median image"], **common)
        if not H.lowres_warranted(plan.patch_size, shape):
            break
    if not H.keep_lowres(median_shape_t, np.asarray(sp_t) / spacing * median_shape_t):
        return None
    return dataclasses.replace(plan, batch_dice=False, next_stage="3d_cascade_fullres")


def _shapes_and_spacing(fp: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Case spacings and shapes after crop, the full-resolution target spacing and whether the data is 2D."""
    spacings = np.array(fp["spacings"], float)
    shapes = np.array(fp["shapes_after_crop"], float)
    return spacings, shapes, H.target_spacing(spacings, shapes), bool(np.all(shapes[:, 0] == 1))


def make_plans(ds: DatasetInfo, fp: dict, gpu_memory_gb: float | None = None, preset: str = "default") -> Plans:
    """Plans for every configuration nnU-Net's planner (or its residual-encoder preset) would make."""
    pre = H.get_preset(preset)
    gpu_memory_gb = float(pre.reference_gb if gpu_memory_gb is None else gpu_memory_gb)
    spacings, shapes, fullres_spacing, single_slice = _shapes_and_spacing(fp)
    num_classes = ds.label_spec.num_outputs  # regions, or labels without ignore
    nch = ds.num_channels
    # single-slice data is never transposed (its z is a dummy or the slice thickness)
    fwd, bwd = ([0, 1, 2], [0, 1, 2]) if single_slice else H.transpose_axes(fullres_spacing)
    sp_t = fullres_spacing[fwd]
    # median shape after resampling to the target spacing (float: a half voxel with an even number of cases)
    resampled = np.array([[round(float(v)) for v in s * sp / fullres_spacing] for s, sp in zip(shapes, spacings)])
    median_shape_t = np.median(resampled, 0)[fwd]
    dataset_voxels = float(np.prod(median_shape_t, dtype=np.float64)) * len(ds.cases)

    schemes = [H.normalization_scheme(ds.channel_names[str(c)]) for c in range(nch)]
    rel = fp["median_relative_size_after_crop"]
    use_mask = [H.use_mask_for_norm(s, rel) for s in schemes]
    anis = (not single_slice) and H.is_anisotropic(sp_t)
    norm_reason = ", ".join(f"channel {c} ({ds.channel_names[str(c)]!r}): {s}"
                            f"{' inside the nonzero mask' if m else ''}"
                            for c, (s, m) in enumerate(zip(schemes, use_mask)))
    base_reasons = [f"normalisation {norm_reason} (median size after crop {rel:.2f})"]
    spacing_reason = (f"target spacing {[round(float(s), 4) for s in sp_t]} mm (z first) = median per axis"
                      + ("; coarse axis from the 10th percentile (anisotropic: >3x the other axes and few slices)"
                         if not single_slice and not np.allclose(fullres_spacing, np.median(spacings, 0)) else ""))
    common = dict(num_channels=nch, num_classes=num_classes, schemes=schemes, use_mask=use_mask,
                  gpu_memory_gb=gpu_memory_gb, preset=pre)

    configs: dict[str, ConfigurationPlan] = {}
    configs["2d"] = plan_configuration(
        "2d", sp_t[1:], median_shape_t[1:], dataset_voxels, anisotropic=False, reasons=base_reasons + [
            f"in-plane spacing {[round(float(s), 4) for s in sp_t[1:]]} mm = median; slices kept at their own z "
            "spacing"], **common)
    if median_shape_t[0] != 1:
        full = plan_configuration(
            "3d_fullres", sp_t, median_shape_t, dataset_voxels, anisotropic=anis, reasons=base_reasons + [
                spacing_reason] + (["anisotropic: coarse axis resampled separately (order 0)"] if anis else []),
            **common)
        low = _lowres(full, sp_t, median_shape_t, len(ds.cases), common, base_reasons)
        if low is not None:
            configs["3d_lowres"] = low
        configs["3d_fullres"] = dataclasses.replace(full, batch_dice=low is not None)
        if low is not None:
            configs["3d_cascade_fullres"] = dataclasses.replace(
                full, batch_dice=True, previous_stage="3d_lowres", inherits_from="3d_fullres",
                reasons=full.reasons + ["3d_cascade_fullres: 3d_fullres fed the 3d_lowres prediction as well"])

    return Plans(
        plans_version=PLANS_VERSION, dataset_name=ds.name, dataset_dir=str(ds.root), num_input_channels=nch,
        labels=dict(ds.labels), channel_names=dict(ds.channel_names), file_ending=ds.file_ending,
        transpose_forward=[int(i) for i in fwd], transpose_backward=[int(i) for i in bwd],
        original_median_spacing_after_transp=[float(s) for s in np.median(spacings, 0)[fwd]],
        original_median_shape_after_transp=[float(s) for s in np.median(shapes, 0)[fwd]],
        gpu_memory_target_gb=gpu_memory_gb, preset=pre.name, regions_class_order=ds.regions_class_order,
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
    if plans.recommendation is not None:
        r = plans.recommendation
        why.append(f"`autoseg train` without -c trains {r.configuration}: {'; '.join(r.reasons)}")
    head = f"{plans.dataset_name}: planned for {plans.gpu_memory_target_gb:g} GB of GPU memory\n"
    return head + table + "\n\nwhy:\n" + "\n".join(why)
