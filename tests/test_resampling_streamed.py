"""The streamed resampling (float32 spline prefilter, one channel at a time, running argmax) gives the numbers of
the plain scipy/numpy formulation it replaces."""
import numpy as np
import pytest
from scipy.ndimage import affine_transform

from autoseg.preprocessing.resampling import resample_array, resample_probabilities, resample_seg, resampled_argmax


def _plain(x, new_shape, order):
    scale = np.array(x.shape, float) / np.array(new_shape, float)
    return affine_transform(x.astype(np.float64), scale, offset=0.5 * scale - 0.5, output_shape=new_shape,
                            order=order, mode="nearest", prefilter=order > 1)


@pytest.mark.parametrize("new_shape", [(9, 55, 30), (5, 20, 61)])
@pytest.mark.parametrize("order", [0, 1, 3])
def test_matches_scipy_with_its_float64_prefilter(new_shape, order):
    x = np.random.default_rng(0).normal(size=(9, 40, 37)).astype(np.float32)
    assert np.abs(resample_array(x, new_shape, order) - _plain(x, new_shape, order)).max() < 1e-4


@pytest.mark.parametrize("shape,new_shape", [((9, 40, 37), (18, 13, 37)), ((1, 16, 16), (3, 16, 5)),
                                             ((7, 8, 9), (7, 8, 9 * 3)), ((40, 37), (17, 80)), ((2, 5), (1, 5))])
@pytest.mark.parametrize("order", [1, 3])
def test_separable_resampling_matches_scipy(shape, new_shape, order):
    """Linear and cubic resampling run axis by axis: same numbers as scipy's N-D resampling, upsampling and
    downsampling, axes that keep their length, a single slice, 2D."""
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    got = resample_array(x, new_shape, order)
    assert got.shape == new_shape and got.dtype == np.float32
    assert np.abs(got - _plain(x, new_shape, order)).max() < 1e-4


@pytest.mark.parametrize("separate_z", [False, True])
def test_running_argmax_equals_argmax_of_all_channels(separate_z):
    rng = np.random.default_rng(1)
    p = rng.random((4, 9, 40, 37)).astype(np.float32)
    p /= p.sum(0)
    full = resample_probabilities(p, (12, 50, 30), 1, separate_z, 0)
    assert np.allclose(full.sum(0), 1, atol=1e-5)
    assert np.array_equal(np.argmax(full, 0), resampled_argmax(p, (12, 50, 30), 1, separate_z, 0))


def test_seg_resampling_equals_one_hot_argmax():
    rng = np.random.default_rng(2)
    seg = rng.integers(0, 4, size=(9, 40, 37)).astype(np.int16)
    onehot = np.stack([_plain((seg == v).astype(np.float32), (9, 55, 30), 1) for v in range(4)])
    assert np.array_equal(resample_seg(seg, (9, 55, 30), [0, 1, 2, 3]), np.argmax(onehot, 0))


@pytest.mark.parametrize("shape,new_shape", [((9, 40, 37), (23, 30, 50)), ((20, 32, 32), (7, 48, 40)),
                                             ((6, 16, 16), (6, 20, 12)), ((5, 16, 16), (11, 16, 16))])
@pytest.mark.parametrize("order_z", [0, 1])
def test_separate_z_streamed_slice_by_slice_equals_whole_volume_passes(shape, new_shape, order_z):
    """The coarse axis resampled one output slice at a time from in-plane-resampled input slices gives what
    resampling every slice in-plane first, then the first axis, gives."""
    from autoseg.preprocessing.resampling import _resample_axis0, _resample_nd

    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    mid = np.stack([_resample_nd(s, new_shape[1:], 3) for s in x])
    ref = _resample_axis0(mid, new_shape[0], order_z)
    got = resample_array(x, new_shape, 3, separate_z=True, order_z=order_z)
    assert got.shape == new_shape and np.abs(got - ref).max() < 1e-5
