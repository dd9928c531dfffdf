import numpy as np
import pytest

from autoseg.io.cropping import bbox_of, crop_to_nonzero, uncrop
from autoseg.io.dataset import load_dataset, verify_case
from autoseg.planner.fingerprint import extract_fingerprint
from autoseg.planner.planner import make_plans
from autoseg.preprocessing.preprocessor import preprocess_image
from autoseg.preprocessing.resampling import (
    case_resampling,
    resample_array,
    resample_data,
    resample_probabilities,
    resample_seg,
)


def test_constant_image_stays_constant():
    x = np.full((1, 4, 10, 10), 3.5, np.float32)
    y = resample_data(x, (8, 17, 13), order=3, separate_z=True)
    assert y.shape == (1, 8, 17, 13) and np.allclose(y, 3.5, atol=1e-5)


def test_seg_resampling_keeps_box_and_labels():
    seg = np.zeros((4, 20, 20), np.int16)
    seg[:, 5:15, 5:15] = 2
    seg[:, 8:12, 8:12] = 1
    up = resample_seg(seg, (4, 40, 40), [0, 1, 2], separate_z=True)
    assert set(np.unique(up)) == {0, 1, 2}
    assert (up == 2).sum() + (up == 1).sum() == pytest.approx(4 * 20 * 20, rel=0.02)
    assert np.array_equal(resample_seg(up, (4, 20, 20), [0, 1, 2], separate_z=True), seg)


def test_separate_z_uses_nearest_along_slices():
    x = np.zeros((1, 3, 4, 4), np.float32)
    x[0, 1] = 1.0
    y = resample_data(x, (6, 4, 4), order=3, separate_z=True, order_z=0)
    assert set(np.unique(y.round(6))) <= {0.0, 1.0}  # no blending between slices


def test_crop_uncrop_round_trip():
    data = np.zeros((2, 6, 10, 12), np.float32)
    data[0, 1:5, 2:7, 3:9] = 1
    data[1, 2, 8, 10] = 5
    c, _, box, _ = crop_to_nonzero(data)
    assert box == [[1, 5], [2, 9], [3, 11]]
    assert np.array_equal(uncrop(c, box, data.shape[1:]), data)
    assert bbox_of(np.zeros((3, 3), bool)) == [[0, 3], [0, 3]]


@pytest.mark.parametrize("config", ["2d", "3d_fullres"])
def test_preprocess_then_export_round_trip(tiny_phantom, config):
    """Labels pushed through preprocessing (crop, transpose, resample) and back through the export path
    (probability resampling, inverse transpose, uncrop) land on the original grid."""
    ds = load_dataset(tiny_phantom)
    plans = make_plans(ds, extract_fingerprint(ds, 1))
    cfg = plans.configuration(config)
    data, seg, geom = verify_case(ds, ds.cases[0])
    pre, seg_pre, props = preprocess_image(data, geom, plans, cfg, seg)
    assert pre.shape[1:] == seg_pre.shape
    assert abs(pre[0].mean()) < 0.05 and abs(pre[0].std() - 1) < 0.05  # z-scored before resampling
    values = sorted(plans.labels.values())
    onehot = np.stack([(seg_pre == v).astype(np.float32) for v in values])
    probs = resample_probabilities(onehot, props["shape_after_crop_transposed"], 1, cfg.resampling_data["separate_z"])
    probs = probs.transpose([0] + [a + 1 for a in plans.transpose_backward])
    back = uncrop(np.array(values)[probs.argmax(0)], props["bbox"], geom.shape)
    assert back.shape == seg.shape
    for v in values[1:]:
        inter = np.logical_and(back == v, seg == v).sum()
        assert 2 * inter / ((back == v).sum() + (seg == v).sum()) > 0.93


def test_separate_axis_other_than_the_first():
    """A coarse last axis (e.g. spacing (1, 1, 4) after transposition) is resampled with order_z along it, exactly as
    the same array with that axis moved first."""
    rng = np.random.default_rng(0)
    x = rng.random((9, 10, 4)).astype(np.float32)
    got = resample_array(x, (12, 14, 7), order=3, separate_z=True, order_z=0, axis=2)
    moved = resample_array(np.moveaxis(x, 2, 0), (7, 12, 14), order=3, separate_z=True, order_z=0)
    np.testing.assert_array_equal(got, np.moveaxis(moved, 0, 2))
    # nearest along the coarse axis: every output slice is an in-plane resampling of one input slice
    for k in range(7):
        assert any(np.allclose(got[..., k], resample_array(x[..., j], (12, 14), order=3), atol=1e-5)
                   for j in range(4))


@pytest.mark.parametrize("spacing, target, expect", [
    ((10.0, 1.5, 1.5), (10.0, 1.5, 1.5), {"separate_z": True, "axis": 0}),   # the case is anisotropic
    ((1.0, 1.0, 4.0), (2.0, 2.0, 2.0), {"separate_z": True, "axis": 2}),     # coarse axis last, for this case
    ((2.0, 2.0, 2.0), (1.0, 1.0, 5.0), {"separate_z": True, "axis": 2}),     # isotropic case, anisotropic target
    ((1.0, 1.0, 1.0), (1.5, 1.5, 1.5), {"separate_z": False, "axis": 0}),    # neither
    ((4.0, 4.0, 1.0), (4.0, 4.0, 1.0), {"separate_z": False, "axis": 0}),    # two coarse axes tie: jointly
])
def test_case_resampling_is_decided_per_case(spacing, target, expect):
    assert case_resampling(spacing, target) == expect
