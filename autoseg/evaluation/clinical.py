"""Cardiac clinical indices from label maps, and their agreement between prediction and reference.

Short-axis stacks (labels named LV, RV, MYO): per patient, from the ED and ES cases,
LV/RV end-diastolic and end-systolic volume (ml), stroke volume (ml), ejection fraction (%), and myocardial mass
(g) = MYO volume at ED x 1.05 g/ml. Volumes are voxel counts x voxel volume (slice spacing x in-plane area).

Apical echo views (labels LV, MYO, LA, CAMUS style): LV volume by Simpson's biplane method of discs from the
2-chamber and 4-chamber masks, and EF from ED and ES.
"""
from __future__ import annotations

import numpy as np

MYOCARDIAL_DENSITY_G_PER_ML = 1.05
SIMPSON_DISCS = 20


def volume_ml(mask: np.ndarray, spacing) -> float:
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def short_axis_indices(ed: dict[str, float], es: dict[str, float]) -> dict[str, float | None]:
    """Indices from per-structure volumes (ml) at ED and ES: keys LV, RV, MYO."""
    out: dict[str, float | None] = {}
    for s in ("LV", "RV"):
        if s in ed and s in es:
            edv, esv = ed[s], es[s]
            out[f"{s}_EDV_ml"] = edv
            out[f"{s}_ESV_ml"] = esv
            out[f"{s}_SV_ml"] = edv - esv
            out[f"{s}_EF_pct"] = 100.0 * (edv - esv) / edv if edv > 0 else None
    if "MYO" in ed:
        out["MYO_mass_g"] = ed["MYO"] * MYOCARDIAL_DENSITY_G_PER_ML
    return out


def agreement(pred: list[float | None], ref: list[float | None]) -> dict:
    """Pearson r, bias (prediction - reference), 95% limits of agreement (Bland-Altman) and mean absolute error,
    over the patients where both values exist."""
    pairs = [(p, r) for p, r in zip(pred, ref) if p is not None and r is not None]
    n = len(pairs)
    if n == 0:
        return {"n": 0, "pearson_r": None, "bias": None, "loa_low": None, "loa_high": None, "mae": None}
    p = np.array([x[0] for x in pairs], float)
    r = np.array([x[1] for x in pairs], float)
    d = p - r
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    corr = float(np.corrcoef(p, r)[0, 1]) if n > 2 and p.std() > 0 and r.std() > 0 else None
    return {"n": n, "pearson_r": corr, "bias": float(d.mean()), "loa_low": float(d.mean() - 1.96 * sd),
            "loa_high": float(d.mean() + 1.96 * sd), "mae": float(np.abs(d).mean())}


def _disc_diameters(mask2d: np.ndarray, spacing2d, n_discs: int) -> tuple[np.ndarray, float]:
    """Long axis by principal components of the LV cavity (in mm); diameters of ``n_discs`` equal slabs
    perpendicular to it, each taken at the slab's mid-level. Returns (diameters in mm, long-axis length in mm)."""
    pts = np.argwhere(mask2d).astype(float) * np.asarray(spacing2d, float)
    if len(pts) < 3:
        return np.zeros(n_discs), 0.0
    c = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - c, full_matrices=False)
    axis, perp = vt[0], vt[1]
    t = (pts - c) @ axis
    u = (pts - c) @ perp
    pix = float(np.mean(spacing2d))
    lo, hi = t.min() - pix / 2, t.max() + pix / 2
    length = hi - lo
    mids = lo + (np.arange(n_discs) + 0.5) * length / n_discs
    diam = np.zeros(n_discs)
    for i, m in enumerate(mids):  # diameter at the disc's mid-level (a band one pixel wide)
        sel = np.abs(t - m) <= pix / 2
        if sel.any():
            diam[i] = u[sel].max() - u[sel].min() + pix
    return diam, length


def simpson_biplane_ml(mask_2ch: np.ndarray, spacing_2ch, mask_4ch: np.ndarray, spacing_4ch,
                       n_discs: int = SIMPSON_DISCS) -> float:
    """LV volume (ml) = pi/4 * sum_i a_i * b_i * L / N, with a_i, b_i the disc diameters in the two views and L the
    longer of the two long axes."""
    a, la = _disc_diameters(np.asarray(mask_2ch, bool), spacing_2ch, n_discs)
    b, lb = _disc_diameters(np.asarray(mask_4ch, bool), spacing_4ch, n_discs)
    length = max(la, lb)
    return float(np.pi / 4 * np.sum(a * b) * length / n_discs) / 1000.0
