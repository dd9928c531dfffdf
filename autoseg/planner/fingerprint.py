"""Dataset fingerprint: what the planner needs to know about a dataset, measured once and saved.

Reads every training case (which also verifies it: values, shapes, spacings, NaN), crops it to the nonzero
region and records spacing, shapes and a sample of foreground intensities per channel.
"""
from __future__ import annotations

import time
from functools import partial

import numpy as np

from ..core.process import pool_map
from ..io.cropping import crop_to_nonzero
from ..io.dataset import DatasetInfo, verify_case

SAMPLES_PER_CASE = 10_000


def case_fingerprint(ds: DatasetInfo, case: str, seed: int = 0) -> dict:
    data, seg, geom = verify_case(ds, case)
    data_c, seg_c, bbox, _ = crop_to_nonzero(data, seg)
    fg = seg_c > 0
    rng = np.random.default_rng(seed)
    samples = []
    for c in range(data_c.shape[0]):
        vals = data_c[c][fg]
        if vals.size > SAMPLES_PER_CASE:
            vals = rng.choice(vals, SAMPLES_PER_CASE, replace=False)
        samples.append(vals.astype(np.float32))
    return {
        "case": case,
        "spacing": list(geom.spacing),
        "shape_before_crop": list(geom.shape),
        "shape_after_crop": list(seg_c.shape),
        "relative_size_after_crop": float(np.prod(seg_c.shape) / np.prod(geom.shape)),
        "labels_present": sorted(int(v) for v in np.unique(seg)),
        "components_per_label": components_per_label(seg),
        "_samples": samples,
    }


def components_per_label(seg: np.ndarray) -> dict[str, int]:
    """How many connected pieces (26-connected in 3D, 8 in 2D) each foreground value of a label map forms (one
    multi-label pass: cc3d numbers the pieces of every value separately)."""
    import cc3d

    seg = np.squeeze(seg) if seg.ndim > 3 else seg
    if not seg.any():
        return {}
    pieces, n = cc3d.connected_components(np.ascontiguousarray(seg), connectivity=26 if seg.ndim == 3 else 8,
                                          return_N=True)
    value_of = np.zeros(n + 1, dtype=np.int64)
    value_of[pieces.ravel()] = seg.ravel()
    counts = np.bincount(value_of[1:])
    return {str(v): int(c) for v, c in enumerate(counts) if v > 0 and c > 0}


def _weighted_percentile(sorted_values: np.ndarray, cum_weights: np.ndarray, q: float) -> float:
    """Smallest value whose cumulative weight reaches q percent (the large-sample limit of np.percentile)."""
    i = int(np.searchsorted(cum_weights, q / 100.0 * cum_weights[-1] - 1e-12))
    return float(sorted_values[min(i, len(sorted_values) - 1)])


def _intensity_props(per_case: list[np.ndarray]) -> dict[str, float]:
    """Foreground intensity statistics in which every case weighs the same, however large its foreground.

    nnU-Net draws the same number of samples (with replacement) from every case's foreground; these are the exact
    statistics that sampling approaches, so a case with a large structure does not dominate the CT clipping range.
    """
    per_case = [v.astype(np.float64) for v in per_case if v.size]
    if not per_case:
        return {k: 0.0 for k in ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")}
    values = np.concatenate(per_case)
    weights = np.concatenate([np.full(v.size, 1.0 / v.size) for v in per_case])
    mean = float(np.sum(values * weights) / weights.sum())
    std = float(np.sqrt(np.sum(weights * (values - mean) ** 2) / weights.sum()))
    order = np.argsort(values, kind="stable")
    sv, cw = values[order], np.cumsum(weights[order])
    return {"mean": mean, "median": _weighted_percentile(sv, cw, 50.0), "std": std,
            "min": float(values.min()), "max": float(values.max()),
            "percentile_99_5": _weighted_percentile(sv, cw, 99.5),
            "percentile_00_5": _weighted_percentile(sv, cw, 0.5)}


def extract_fingerprint(ds: DatasetInfo, num_workers: int = 2) -> dict:
    t0 = time.time()
    fn = partial(case_fingerprint, ds)
    results = pool_map(fn, list(ds.cases), num_workers, desc="fingerprint")  # workers die with a killed plan
    nch = ds.num_channels
    props = {str(c): _intensity_props([r["_samples"][c] for r in results]) for c in range(nch)}
    for r in results:
        del r["_samples"]
    return {
        "fingerprint_version": 1,
        "dataset_name": ds.name,
        "num_cases": len(results),
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "median_relative_size_after_crop": float(np.median([r["relative_size_after_crop"] for r in results])),
        "foreground_intensity_properties_per_channel": props,
        "cases": results,
        "seconds": round(time.time() - t0, 2),
    }
