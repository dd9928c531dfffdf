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
