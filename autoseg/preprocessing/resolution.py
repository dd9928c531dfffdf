"""What a coarser grid costs a dataset's labels, measured before a budget plan coarsens it.

A budget plan buys steps by coarsening the spacing (``autoseg.planner.budget``). For blob-like structures that costs
little, for thin ones everything: a network can at best reproduce the training targets on its grid, and the
prediction is resampled back from that grid. So the best Dice any network can reach at a spacing is that of the
labels' own round trip: each coarse voxel given its exact share of every class (what a perfect network would
predict), resampled back linearly as prediction resamples probabilities, then the argmax. Measured on 12 training
cases of each dataset (``benchmarks/label_round_trip.py``):

- DRIVE's retinal vessels (about 2.5 px wide): 0.979 at 1.25x the full-resolution spacing, 0.971 at 1.5x, 0.921 at
  2x (the 2x plans scored vessel F1 0.768 against the literature's 0.814);
- ACDC's myocardium: 0.999 at 1.5x, 0.981 at 2x, 0.934 at 2.5x; CAMUS: 0.994 or more up to 2x.

The coarsest factor whose mean round-trip Dice stays at or above ``CEILING_DICE`` for every class is the most a
budget may coarsen; full resolution is always allowed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..io.cropping import bbox_of
from ..io.dataset import DatasetInfo
from ..io.images import read_label
from ..planner.budget import LabelLimit
from .resampling import resample_array, resampled_argmax

CEILING_DICE = 0.97
MAX_CASES = 12  # labels sampled evenly over the dataset: enough for a mean, seconds of planning time
MARGIN_VOXELS = 8  # background kept around the foreground's bounding box before resampling (per side, x factor)


def _crop(seg: np.ndarray, margin: int) -> np.ndarray:
    """The label map cut to its foreground's bounding box plus ``margin`` voxels of background per side: resampling
    far-away background costs time and changes no foreground voxel."""
    box = bbox_of(seg > 0)
    return seg[tuple(slice(max(a - margin, 0), min(b + margin, n)) for (a, b), n in zip(box, seg.shape))]


def round_trip_dice(seg: np.ndarray, spacing: Sequence[float], target: Sequence[float],
                    labels: Sequence[int]) -> dict[int, float]:
    """Dice of each label present in ``seg`` (Z, Y, X at ``spacing``) after resampling it to ``target`` spacing and
    back: the best any network trained on that grid can score on this case."""
    factor = max(t / s for t, s in zip(target, spacing))
    seg = _crop(seg, int(np.ceil(MARGIN_VOXELS * max(factor, 1.0))))
    coarse_shape = [max(1, int(round(n * s / t))) for n, s, t in zip(seg.shape, spacing, target)]
    labels = sorted(set(int(v) for v in labels) | {0})
    # a network at its best predicts each coarse voxel's partial volume of every class; prediction resamples those
    # probabilities back linearly and takes the argmax
    masks = {v: seg == v for v in labels}
    coarse = [resample_array(m.astype(np.float32), coarse_shape, 1) for m in masks.values()]
    back = np.asarray(labels)[resampled_argmax(coarse, seg.shape, 1)]
    out = {}
    for v, ref in masks.items():
        n = int(np.count_nonzero(ref))
        if v == 0 or n == 0:
            continue
        got = back == v
        out[v] = float(2.0 * np.count_nonzero(ref & got) / (n + np.count_nonzero(got)))
    return out


def coarsest_factor(samples: Sequence[tuple[np.ndarray, Sequence[float]]], full_spacing: Sequence[float],
                    coarsened: Sequence[bool], factors: Sequence[float], labels: Sequence[int],
                    threshold: float = CEILING_DICE) -> tuple[float, dict[float, dict[int, float]]]:
    """(largest allowed factor, {factor: {label: mean round-trip Dice}}) for label maps ``samples`` given as
    (seg, spacing), Z, Y, X. Axes with ``coarsened`` go to ``full_spacing`` times the factor, the others keep each
    case's own spacing. Factors are tried from the finest and the first that drops a class below ``threshold``
    stops the search (coarser ones lose more)."""
    factors = sorted(factors)
    allowed, table = factors[0], {}
    for f in factors[1:]:
        per_label: dict[int, list[float]] = {}
        for seg, spacing in samples:
            target = [fs * f if c else s for fs, s, c in zip(full_spacing, spacing, coarsened)]
            for v, d in round_trip_dice(seg, spacing, target, labels).items():
                per_label.setdefault(v, []).append(d)
        table[f] = {v: float(np.mean(d)) for v, d in sorted(per_label.items())}
        if table[f] and min(table[f].values()) < threshold:
            break
        allowed = f
    return allowed, table


def describe(allowed: float, table: dict[float, dict[int, float]], names: dict[int, str] | None = None,
             threshold: float = CEILING_DICE) -> str:
    """One line for a plan's reasons."""
    names = names or {}
    rows = "; ".join(f"{f:g}x " + ", ".join(f"{names.get(v, v)} {d:.3f}" for v, d in row.items())
                     for f, row in table.items())
    return (f"labels' round trip through a coarser grid (best Dice a network trained there can reach): {rows}; "
            f"coarsest spacing allowed {allowed:g}x full resolution (every class >= {threshold:g})")


def label_limit(ds: DatasetInfo, transpose_forward: Sequence[int], max_cases: int = MAX_CASES) -> LabelLimit:
    """The labels of up to ``max_cases`` training cases (evenly spread over the dataset), read once and put in the
    plan's axis order, judged for every configuration a budget plans. A configuration with two spacings (2d) is
    coarsened in-plane, each case keeping its own slice spacing."""
    step = max(1, -(-len(ds.cases) // max_cases))
    samples = []
    for case in ds.cases[::step]:
        seg, geom = read_label(ds.label_file(case), case)
        samples.append((np.ascontiguousarray(seg.transpose(transpose_forward)),
                        [geom.spacing[a] for a in transpose_forward]))
    names = {v: k for k, v in ds.labels.items() if isinstance(v, int)}

    def limit(spacing: Sequence[float], coarsened: Sequence[bool], factors: Sequence[float]) -> tuple[float, str]:
        full, axes = list(spacing), list(coarsened)
        if len(full) == 2:
            full, axes = [0.0] + full, [False] + axes
        allowed, table = coarsest_factor(samples, full, axes, factors, ds.label_values)
        return allowed, describe(allowed, table, names)

    return limit
