"""What a coarser grid costs the labels (autoseg.preprocessing.resolution) and how a budget plan obeys it: known
answers on drawn shapes, the search's stopping rule, the axes it coarsens, and the planner's shrunk patches."""
import numpy as np
import pytest

from autoseg.planner import budget as B
from autoseg.preprocessing import resolution as R


def _disk_and_lines(n=96, radius=20, lines=True):
    """(1, n, n): a disk (label 1) and three oblique lines 2 px wide (label 2), off the grid as vessels are."""
    yy, xx = np.mgrid[:n, :n]
    seg = np.zeros((1, n, n), np.int16)
    seg[0][(yy - 48) ** 2 + (xx - 30) ** 2 <= radius ** 2] = 1
    for k in (40, 52, 64) if lines else ():
        seg[0][(np.abs(xx - yy * 0.5 - k) < 1.0) & (yy > 5) & (yy < 90)] = 2
    return seg


def test_round_trip_keeps_blobs_and_loses_thin_lines():
    seg = _disk_and_lines()
    assert R.round_trip_dice(seg, [1, 1, 1], [1, 1, 1], [0, 1, 2]) == {1: 1.0, 2: 1.0}  # no resampling, no loss
    at2 = R.round_trip_dice(seg, [1, 1, 1], [1, 2, 2], [0, 1, 2])
    assert at2[1] > 0.97  # a disk 40 px across survives 2x
    assert at2[2] < 0.7  # lines 2 px wide become 1 voxel and come back broken
    at3 = R.round_trip_dice(seg, [1, 1, 1], [1, 3, 3], [0, 1, 2])
    assert at3[2] < at2[2]
    # a label absent from the case is not scored (it would read as Dice 0 or 1)
    assert set(R.round_trip_dice(_disk_and_lines(lines=False), [1, 1, 1], [1, 2, 2], [0, 1, 2])) == {1}


def test_coarsest_factor_stops_at_the_first_factor_that_loses_a_class():
    factors = B.SPACING_FACTORS
    blobs = _disk_and_lines(radius=28, lines=False)
    allowed, table = R.coarsest_factor([(blobs, [1.0, 1.0, 1.0])], [1.0, 1.0, 1.0], [False, True, True], factors,
                                       [0, 1, 2])
    assert allowed == factors[-1] and list(table) == list(factors[1:])
    allowed, table = R.coarsest_factor([(_disk_and_lines(), [1.0, 1.0, 1.0])], [1.0, 1.0, 1.0], [False, True, True],
                                       factors, [0, 1, 2])
    # the lines fall under the ceiling at some factor; that factor is in the table and is the last one tried
    last = list(table)[-1]
    assert table[last][2] < R.CEILING_DICE and allowed < last
    assert all(min(row.values()) >= R.CEILING_DICE for f, row in table.items() if f <= allowed)
    assert allowed == max([factors[0]] + [f for f in table if f < last])


def test_axes_left_alone_keep_each_cases_own_spacing():
    """Thin along z only: a 2d configuration (in-plane coarsening) keeps it; coarsening z as well loses it."""
    seg = np.zeros((12, 40, 40), np.int16)
    seg[5:7, 5:35, 5:35] = 1  # a slab 2 slices thick, wide in-plane
    kw = dict(factors=(1.0, 2.0), labels=[0, 1])
    in_plane, _ = R.coarsest_factor([(seg, [1.0, 1.0, 1.0])], [1.0, 1.0, 1.0], [False, True, True], **kw)
    every_axis, table = R.coarsest_factor([(seg, [1.0, 1.0, 1.0])], [1.0, 1.0, 1.0], [True, True, True], **kw)
    assert (in_plane, every_axis) == (2.0, 1.0) and table[2.0][1] < R.CEILING_DICE


def test_label_limit_reads_the_dataset_in_the_plans_axis_order(tiny_phantom):
    from autoseg.io.dataset import load_dataset

    ds = load_dataset(tiny_phantom)
    limit = R.label_limit(ds, [0, 1, 2], max_cases=2)
    allowed, why = limit([1.5, 1.5], [True, True], (1.0, 1.25))  # a 2d configuration: two spacings
    assert allowed in (1.0, 1.25) and "1.25x" in why and "coarsest spacing allowed" in why
    # class names from dataset.json label the reason
    assert any(name in why for name in ds.labels if name != "background")


def test_labels_that_forbid_coarsening_shrink_the_patch_instead():
    kw = dict(plan_batch=40, num_channels=1, num_classes=2, coarsen_all=True)
    free = B.candidates([1.0, 1.0], [400, 400], **kw)
    capped = B.candidates([1.0, 1.0], [400, 400], max_factor=1.5, **kw)
    assert max(c.spacing[0] for c in free) == 3.0 and max(c.spacing[0] for c in capped) == 1.5
    normal = [c for c in capped if c in free]
    shrunk = capped[len(normal):]
    assert capped[:len(normal)] == normal  # every usual candidate first, in the usual order
    assert {c.spacing[0] for c in shrunk} == {1.0, 1.25, 1.5} and all(c.batch_size == 8 for c in shrunk)
    assert [c.spacing[0] for c in shrunk] == sorted(c.spacing[0] for c in shrunk)  # finest first
    for c in shrunk:  # half the image per axis, padded to the network's divisibility: below every usual patch
        usual = min(n.patch_size[0] for n in normal if n.spacing == c.spacing)
        assert c.patch_size[0] < usual and c.patch_size[0] <= 400 / c.spacing[0] / 2 + 32, c.describe()
    # no shrunk candidates where nothing was ruled out
    assert B.candidates([1.0, 1.0], [400, 400], max_factor=3.0, **kw) == free

    rate = 1e-10

    def timer(c):
        return rate * c.macs * c.batch_size

    # a budget that affords some usual candidate takes it; one that affords none of them takes a shrunk patch at
    # the finest spacing that gets its steps, not the cheapest candidate
    def chosen(train_seconds):
        return capped[B.choose(capped, lambda i, t: train_seconds, 2, timer, [])[0]]

    cheapest_normal = min(normal, key=lambda c: c.macs * c.batch_size)
    enough = B.MIN_STEPS[2] * B.loop_seconds_per_step(timer(cheapest_normal)) * 1.01
    assert chosen(enough) in normal
    cheapest = min(shrunk, key=timer)
    assert timer(cheapest) < timer(cheapest_normal)
    barely = B.MIN_STEPS[2] * B.loop_seconds_per_step(timer(cheapest)) * 1.01
    want = next(c for c in shrunk if timer(c) <= timer(cheapest))  # the finest shrunk patch that costs no more
    pick = chosen(barely)
    assert pick == want and pick.spacing[0] < B.SPACING_FACTORS[-1], pick.describe()


@pytest.mark.parametrize("max_factor", [0.5, 1.0])
def test_full_resolution_is_always_a_candidate(max_factor):
    cands = B.candidates([1.0, 1.0], [200, 200], plan_batch=8, num_channels=1, num_classes=2, coarsen_all=True,
                         max_factor=max_factor)
    assert {c.spacing[0] for c in cands} == {1.0}
