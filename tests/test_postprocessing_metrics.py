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


def test_components_per_label_counts_pieces_in_3d_and_2d():
    from autoseg.planner.fingerprint import components_per_label

    seg = np.zeros((6, 10, 10), np.uint8)
    seg[1:3, 1:3, 1:3] = 1
    seg[4:6, 7:9, 7:9] = 1  # a second, separate piece of label 1
    seg[2:5, 5, 5] = 2
    seg[3, 1, 8] = 3
    seg[4, 2, 9] = 3  # diagonal neighbour across slices: one 26-connected piece
    assert components_per_label(seg) == {"1": 2, "2": 1, "3": 1}
    flat = np.zeros((10, 10), np.uint8)
    flat[0, 0] = flat[1, 1] = 1  # 8-connected in 2D
    flat[5, 5] = flat[5, 8] = 2
    assert components_per_label(flat) == {"1": 1, "2": 2}
    assert components_per_label(flat[None]) == {"1": 1, "2": 2}  # a 2D case stored with one slice


def test_single_piece_labels_need_one_piece_in_four_of_five_references():
    from autoseg.postprocessing.components import single_piece_labels

    def fp(counts):
        return {"cases": [{"components_per_label": c} for c in counts]}

    labels = {"background": 0, "RV": 1, "MYO": 2, "LV": 3, "ignore": 4}
    counts = [{"1": 1, "2": 1, "3": 1, "4": 3}] * 8 + [{"1": 2, "2": 1, "4": 5}] * 2
    assert single_piece_labels(fp(counts), labels) == [1, 2, 3]  # RV: 8 of 10; LV: 8 of 8 cases that have it
    counts = [{"1": 1, "2": 1, "3": 1}] * 7 + [{"1": 2, "2": 1, "3": 1}] * 3
    assert single_piece_labels(fp(counts), labels) == [2, 3]  # RV one piece in 7 of 10 only
    assert single_piece_labels(fp(counts), {"background": 0, "whole": [1, 2, 3], "core": [2, 3]}) == []  # regions
    assert single_piece_labels({"cases": [{"labels_present": [0, 1]}]}, labels) == []  # fingerprint before counts
