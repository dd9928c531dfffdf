"""Surface distances in millimetres: HD95 and ASSD, with anisotropic voxel spacing.

Boundary of a mask: its voxels that have at least one face-neighbour (6-connectivity in 3D, 4 in 2D) outside the
mask; the image border counts as outside. The distance from a boundary voxel of A to B is the Euclidean distance in
mm (voxel centres, using the spacing) to the nearest boundary voxel of B.

- HD95: the larger of the two directed 95th percentiles (A->B and B->A, numpy's linear interpolation).
- ASSD: the mean over the union of both directed sets, i.e. (sum d(a, B) + sum d(b, A)) / (|dA| + |dB|).

Empty structures:
- both empty: undefined -> ``None``; left out of means (the number of cases behind each mean is reported);
- exactly one empty (a missed or a spurious structure): the distance is the worst possible on that grid, the
  length of the image diagonal in mm, so such cases are penalised rather than silently skipped; ``flag`` says so.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure


def boundary(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(bool)
    if not mask.any():
        return mask
    struct = generate_binary_structure(mask.ndim, 1)  # face neighbours only
    return mask & ~binary_erosion(mask, struct, border_value=0)


def directed_distances(a_border: np.ndarray, b_border: np.ndarray, spacing) -> np.ndarray:
    """Distances (mm) from every boundary voxel of A to the nearest boundary voxel of B."""
    dt = distance_transform_edt(~b_border, sampling=spacing)
    return dt[a_border]


def _squeeze(pred: np.ndarray, ref: np.ndarray, spacing):
    """Drop singleton axes (a 2D image stored as one slice) so the boundary is computed in 2D."""
    keep = [i for i, s in enumerate(pred.shape) if s > 1] or [0]
    sp = [float(spacing[i]) for i in keep]
    return pred.reshape([pred.shape[i] for i in keep]), ref.reshape([ref.shape[i] for i in keep]), sp


def surface_metrics(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing) -> dict:
    """{'hd95_mm', 'assd_mm', 'flag'} for two binary masks on one grid with the given spacing (mm)."""
    pred_mask, ref_mask, spacing = _squeeze(np.asarray(pred_mask, bool), np.asarray(ref_mask, bool), spacing)
    p_any, r_any = pred_mask.any(), ref_mask.any()
    if not p_any and not r_any:
        return {"hd95_mm": None, "assd_mm": None, "flag": "both empty"}
    if p_any != r_any:
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(pred_mask.shape, spacing))))
        return {"hd95_mm": diag, "assd_mm": diag, "flag": "prediction empty" if r_any else "reference empty"}
    bp, br = boundary(pred_mask), boundary(ref_mask)
    d_pr = directed_distances(bp, br, spacing)
    d_rp = directed_distances(br, bp, spacing)
    hd95 = max(float(np.percentile(d_pr, 95)), float(np.percentile(d_rp, 95)))
    assd = float((d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size))
    return {"hd95_mm": hd95, "assd_mm": assd, "flag": None}
