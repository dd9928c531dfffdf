import numpy as np
import pytest

from autoseg.evaluation.metrics import dice_iou, mean_std
from autoseg.postprocessing.components import apply_postprocessing, keep_largest_component


def test_keep_largest_component_3d():
    seg = np.zeros((5, 20, 20), np.int16)
    seg[1:4, 2:10, 2:10] = 3  # big
    seg[1:2, 15:17, 15:17] = 3  # small island
    seg[0, 0, 0] = 1  # other label untouched
    out = keep_largest_component(seg, 3)
    assert (out == 3).sum() == 3 * 8 * 8
    assert out[0, 0, 0] == 1 and out[1, 15, 15] == 0
    assert (seg == 3).sum() == 3 * 64 + 4  # input not modified
    assert np.array_equal(apply_postprocessing(seg, []), seg)


def test_dice_iou_known_answers():
    a = np.zeros((10, 10), np.int16)
    b = np.zeros((10, 10), np.int16)
    a[:5] = 1
    b[:4] = 1
    d, j = dice_iou(a, b, 1)
    assert d == pytest.approx(2 * 40 / 90) and j == pytest.approx(40 / 50)
    assert dice_iou(a, b, 2) == (None, None)  # both empty: undefined, not averaged
    assert dice_iou(a, np.zeros_like(b), 1) == (0.0, 0.0)
    assert mean_std([1.0, None, 0.5]) == {"mean": 0.75, "std": 0.25, "n": 2}
