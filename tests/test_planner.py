import numpy as np
import pytest

from autoseg.planner import heuristics as H


@pytest.mark.parametrize("spacing,median,patch,pools,kernels,strides", [
    # ACDC (nnU-Net v2.8.1's 3d_fullres plan): in-plane only pooling and (1,3,3) kernels in the first two stages
    ((10, 1.5625, 1.5625), (9, 256, 216), (10, 256, 224), (1, 5, 5),
     [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)],
     [(1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]),
    # isotropic 1 mm, 128^3: five pools everywhere, 3x3x3 kernels
    ((1, 1, 1), (128, 128, 128), (128, 128, 128), (5, 5, 5), [(3, 3, 3)] * 6, [(1, 1, 1)] + [(2, 2, 2)] * 5),
    # ACDC 2D: 256x216 median -> 256x224
    ((1.5625, 1.5625), (256, 216), (256, 224), (5, 5), [(3, 3)] * 6, [(1, 1)] + [(2, 2)] * 5),
])
def test_topology_rules(spacing, median, patch, pools, kernels, strides):
    topo = H.network_topology(spacing, median)
    assert topo.patch_size == patch
    assert topo.pool_per_axis == pools
    assert [tuple(k) for k in topo.kernel_sizes] == kernels
    assert [tuple(s) for s in topo.strides] == strides


def test_acdc_fit_and_batch():
    # 3D: the ACDC median image fits the 8 GB reference, so the patch is the padded median image
    topo, est = H.fit_patch((10, 1.5625, 1.5625), (9, 256, 216), 4, 8.0)
    assert topo.patch_size == (10, 256, 224)
    topo2, est2 = H.fit_patch((1.5625, 1.5625), (256, 216), 4, 8.0)
    assert topo2.patch_size == (256, 224)
    # nnU-Net chose batch 52 for the 2D ACDC plan: capped by 5% of 120 cases of 9x256x216
    assert H.batch_size(est2, 2, 8.0, topo2.patch_size, 9 * 256 * 216 * 120) == 52


def test_patch_shrinks_under_memory_target():
    big, _ = H.fit_patch((1, 1, 1), (400, 400, 400), 2, 8.0)
    small, est = H.fit_patch((1, 1, 1), (400, 400, 400), 2, 2.0)
    assert np.prod(small.patch_size) < np.prod(big.patch_size)
    assert est <= H.memory_reference(3, 2.0)
    assert all(p % d == 0 for p, d in zip(small.patch_size, small.divisible_by))


def test_batch_size_bounds():
    assert H.batch_size(10**12, 3, 8.0, (128, 128, 128), 1e9) == 2  # never below 2
    assert H.batch_size(1000, 2, 8.0, (100, 100), 1e6) == 5  # 5% of 1e6 voxels / 1e4 per patch


@pytest.mark.parametrize("spacings,shapes,expected", [
    # isotropic-ish: plain median
    ([(1, 1, 1), (1.2, 1, 1), (0.8, 1, 1)], [(100, 100, 100)] * 3, (1.0, 1.0, 1.0)),
    # anisotropic with few slices: 10th percentile of the coarse axis
    ([(5, 1, 1), (8, 1, 1), (10, 1, 1), (10, 1, 1), (10, 1, 1)], [(10, 256, 256)] * 5, (6.2, 1.0, 1.0)),
    # anisotropic spacing but many slices: median kept
    ([(5, 1, 1), (8, 1, 1), (10, 1, 1)], [(300, 256, 256)] * 3, (8.0, 1.0, 1.0)),
])
def test_target_spacing(spacings, shapes, expected):
    assert np.allclose(H.target_spacing(np.array(spacings), np.array(shapes)), expected, atol=1e-4)


def test_transpose_puts_coarse_axis_first():
    fwd, bwd = H.transpose_axes([1.0, 1.0, 5.0])
    assert fwd == [2, 0, 1]
    assert [fwd[i] for i in bwd] == [0, 1, 2]


@pytest.mark.parametrize("name,scheme", [("CT", "CTNormalization"), ("ct", "CTNormalization"),
                                         ("cineMRI", "ZScoreNormalization"), ("FLAIR", "ZScoreNormalization")])
def test_normalization_scheme(name, scheme):
    assert H.normalization_scheme(name) == scheme


def test_mask_for_norm_only_when_crop_removed_a_lot():
    assert H.use_mask_for_norm("ZScoreNormalization", 0.5)
    assert not H.use_mask_for_norm("ZScoreNormalization", 0.9)
    assert not H.use_mask_for_norm("CTNormalization", 0.5)


def test_lowres_only_when_patch_small():
    assert not H.lowres_warranted((10, 256, 224), (9, 256, 216))
    assert H.lowres_warranted((128, 128, 128), (400, 400, 400))
    sp = H.next_lowres_spacing([3.0, 1.0, 1.0])
    assert np.allclose(sp, [3.0, 1.03, 1.03])


# --- rules that the differential harness (benchmarks/plan_diff) found; each equals nnU-Net v2.8.1's ---

@pytest.mark.parametrize("spacings,shapes,expected", [
    # 4 mm slices over 0.9 x 1.5 mm in-plane: 4 < 3 x 1.5 (the largest other spacing), so not anisotropic
    ([(4, 0.9, 1.5)] * 3 + [(2, 0.9, 1.5)] * 2, [(20, 300, 180)] * 5, (4.0, 0.9, 1.5)),
    # 5 mm over the same in-plane spacing is (5 > 4.5): 10th percentile of the slice spacing
    ([(5, 0.9, 1.5)] * 3 + [(2, 0.9, 1.5)] * 2, [(20, 300, 180)] * 5, (2.0, 0.9, 1.5)),
])
def test_anisotropy_against_largest_other_spacing(spacings, shapes, expected):
    assert np.allclose(H.target_spacing(np.array(spacings), np.array(shapes)), expected, atol=1e-4)


def test_large_2d_image_keeps_whole_patch_at_batch_2():
    # a 1024x1280 median fits at batch 2 (not at the batch-12 reference): nnU-Net keeps it whole, with 9 stages
    topo, est = H.fit_patch((1.0, 1.0), (1024, 1280), 2, 8.0)
    assert topo.patch_size == (1024, 1280) and topo.n_stages == 9
    assert H.batch_size(est, 2, 8.0, topo.patch_size, 30 * 1024 * 1280) == 2


@pytest.mark.parametrize("patch,median,axis", [
    ((128, 128, 128), (300, 300, 300), 2),  # three-way tie: the last axis
    ((32, 256, 256), (64, 512, 512), 2),  # in-plane tie: the last in-plane axis
    ((64, 256, 128), (64, 512, 512), 0),  # no tie
])
def test_axis_shrunk_first_is_the_last_of_ties(patch, median, axis):
    assert H.axis_to_shrink(patch, median) == axis


def test_half_voxel_median_is_kept_and_can_add_a_pooling_stage():
    # 32.5 pools three times (32.5 -> 17 -> 9 -> 5) and pads to 40; 32 pools three times and stays 32
    assert H.initial_patch_size((1.0, 1.0), (32.5, 32.0)) == (32.5, 32.0)
    assert H.network_topology((1.0, 1.0), (32.5, 32)).patch_size == (40, 32)


@pytest.mark.parametrize("full,low,keep", [
    ((200, 200, 200), (150, 150, 150), True),  # 2.37x
    ((200, 200, 200), (160, 160, 160), False),  # 1.95x: too close to full resolution
    ((100, 100, 100), (50, 100, 100), True),  # exactly 2x
])
def test_lowres_dropped_under_twice_the_voxels(full, low, keep):
    assert H.keep_lowres(full, low) is keep


@pytest.mark.parametrize("name,scheme", [
    ("CT", "CTNormalization"), ("Ct", "CTNormalization"), (" CT", "ZScoreNormalization"),
    ("noNorm", "NoNormalization"), ("NONORM", "NoNormalization"), ("none", "ZScoreNormalization"),
    ("rgb_to_0_1", "RGBTo01Normalization"), ("rgb", "ZScoreNormalization"),
    ("rescale_to_0_1", "RescaleTo01Normalization"), ("zscore", "ZScoreNormalization"), ("T2", "ZScoreNormalization"),
])
def test_channel_names_map_like_nnunet(name, scheme):
    assert H.normalization_scheme(name) == scheme


@pytest.mark.parametrize("case,target,decision", [
    ((10, 1.5, 1.5), (10, 1.5, 1.5), (True, 0)),  # thick slices: separately along z
    ((1, 1, 1), (5, 1, 1), (True, 0)),  # isotropic case, anisotropic target: the target decides
    ((3.5, 1, 1), (2.5, 1, 1), (True, 0)),  # anisotropic case, isotropic-ish target: the case decides
    ((2.5, 1, 1), (2.5, 1, 1), (False, None)),
    ((1, 1, 4), (1, 1, 1), (True, 2)),  # this case's coarse axis is the last one
    ((0.24, 1.25, 1.25), (1, 1, 1), (False, None)),  # two coarse axes: no single slice axis
])
def test_separate_z_per_case(case, target, decision):
    assert H.separate_z_decision(case, target) == decision


def test_resenc_estimates_equal_nnunets_reference_counts():
    # the counts nnU-Net's ResEnc planner source quotes for ResidualEncoderUNet (3 classes, deep supervision)
    f3 = (32, 64, 128, 256, 320, 320)
    assert H.estimate_feature_map_elements((128, 128, 128), [(1, 1, 1)] + [(2, 2, 2)] * 5, f3, 3,
                                           [1, 3, 4, 6, 6, 6], True, [1] * 5, residual=True) == 558319104
    f2 = (32, 64, 128, 256, 512, 512, 512)
    assert H.estimate_feature_map_elements((512, 512), [(1, 1)] + [(2, 2)] * 6, f2, 3,
                                           [1, 3, 4, 6, 6, 6, 6], True, [1] * 6, residual=True) == 129793792


@pytest.mark.parametrize("preset,fits", [("default", True), ("resenc-m", False)])
def test_shrink_rule_per_preset(preset, fits):
    # 2D: plain U-Net stops once batch 2 fits (estimate/12*2 <= reference); ResEnc needs batch 12 to fit
    p = H.PRESETS[preset]
    est = 2 * p.reference_elements[2]
    assert H.fits_memory(est, 2, 8.0, p) is fits


def _dataset(tmp_path, n_cases: int):
    from autoseg.io.dataset import DatasetInfo

    cases = [f"c{i}" for i in range(n_cases)]
    return DatasetInfo(tmp_path, "synthetic", {"0": "CT"}, {"background": 0, "a": 1}, ".nii.gz", cases,
                       {c: c for c in cases}, {})


def _fingerprint(spacing, shape, n):
    props = {"0": {k: 0.0 for k in ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")}}
    return {"spacings": [list(spacing)] * n, "shapes_after_crop": [list(shape)] * n,
            "median_relative_size_after_crop": 1.0, "foreground_intensity_properties_per_channel": props}


def test_cascade_wiring_for_large_ct(tmp_path):
    from autoseg.planner.planner import make_plans

    plans = make_plans(_dataset(tmp_path, 20), _fingerprint((1.0, 0.8, 0.8), (300, 512, 512), 20))
    c = plans.configurations
    assert sorted(c) == ["2d", "3d_cascade_fullres", "3d_fullres", "3d_lowres"]
    assert c["3d_lowres"].next_stage == "3d_cascade_fullres" and not c["3d_lowres"].batch_dice
    assert c["3d_cascade_fullres"].previous_stage == "3d_lowres"
    assert c["3d_cascade_fullres"].patch_size == c["3d_fullres"].patch_size and c["3d_fullres"].batch_dice
    from autoseg.planner.plans import Plans

    assert Plans.from_dict(plans.to_dict()) == plans  # the wiring survives plans.json


def test_no_lowres_no_cascade_and_no_batch_dice(tmp_path):
    from autoseg.planner.planner import make_plans

    plans = make_plans(_dataset(tmp_path, 10), _fingerprint((1.0, 1.0, 1.0), (100, 100, 100), 10))
    assert sorted(plans.configurations) == ["2d", "3d_fullres"]
    assert not plans.configurations["3d_fullres"].batch_dice and plans.configurations["2d"].batch_dice


@pytest.mark.parametrize("preset,gb,cls,blocks", [
    ("default", 8.0, "PlainConvUNet", "n_conv_per_stage"),
    ("resenc-m", 8.0, "ResidualEncoderUNet", "n_blocks_per_stage"),
    ("resenc-l", 24.0, "ResidualEncoderUNet", "n_blocks_per_stage"),
    ("resenc-xl", 40.0, "ResidualEncoderUNet", "n_blocks_per_stage"),
])
def test_presets_name_network_blocks_and_memory(tmp_path, preset, gb, cls, blocks):
    from autoseg.planner.planner import make_plans

    plans = make_plans(_dataset(tmp_path, 10), _fingerprint((1.0, 1.0, 1.0), (160, 160, 160), 10), preset=preset)
    cfg = plans.configurations["3d_fullres"]
    assert plans.preset == preset and plans.gpu_memory_target_gb == gb
    assert cfg.architecture.network_class_name == cls
    n = cfg.architecture.arch_kwargs["n_stages"]
    expected = [2] * n if preset == "default" else [1, 3, 4, 6, 6, 6, 6][:n]
    assert cfg.architecture.arch_kwargs[blocks] == expected
    assert cfg.architecture.arch_kwargs["n_conv_per_stage_decoder"] == [2 if preset == "default" else 1] * (n - 1)


def test_unknown_preset_is_an_autoseg_error(tmp_path):
    from autoseg.core.errors import AutosegError
    from autoseg.planner.planner import make_plans

    with pytest.raises(AutosegError, match="resenc-m"):
        make_plans(_dataset(tmp_path, 2), _fingerprint((1, 1, 1), (32, 32, 32), 2), preset="resenc-s")


def test_budget_on_top_of_a_resenc_preset(tmp_path):
    import torch

    from autoseg.api import _without_cascade
    from autoseg.planner import budget as B
    from autoseg.planner.planner import make_plans

    plans = make_plans(_dataset(tmp_path, 20), _fingerprint((1.0, 0.8, 0.8), (300, 512, 512), 20), preset="resenc-m")
    assert "3d_cascade_fullres" in plans.configurations
    timed = []
    out = B.apply_budget(_without_cascade(plans), 3600, torch.device("cpu"), 20,
                         timer=lambda c: (timed.append(c), 1e-3)[1], verbose=False)
    assert sorted(out.configurations) == ["2d", "3d_fullres"] and out.preset == "resenc-m"
    # the budget times the preset's network: residual encoders with its blocks per stage (1, 3, 4, 6, 6, ...)
    assert timed and {c.network_class_name for c in timed} == {"ResidualEncoderUNet"}
    for c in timed:
        n = c.arch_kwargs.n_stages
        assert c.arch_kwargs.n_blocks_per_stage == (1, 3, 4, 6, 6, 6, 6, 6)[:n]
        assert c.arch_kwargs.n_conv_per_stage_decoder == (1,) * (n - 1)
    for cfg in out.configurations.values():
        assert cfg.budget is not None and cfg.architecture.network_class_name == "ResidualEncoderUNet"
        assert "n_blocks_per_stage" in cfg.architecture.arch_kwargs
