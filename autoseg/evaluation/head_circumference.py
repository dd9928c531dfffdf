"""Fetal head circumference (HC) in mm from a 2D segmentation, measured as the HC18 challenge measures it.

HC18's reference HC is the perimeter of an ellipse fitted to the sonographer's annotation, and its metric is the
absolute difference in mm between that reference and the HC measured on a segmentation. Here, on a mask:

1. the largest connected component (8-connectivity), holes filled, so a stray blob or a gap cannot move the fit;
2. its boundary as a sub-pixel contour (the 0.5 iso-line of the mask, i.e. the pixel edges between head and
   background) in physical coordinates: (row x row spacing, column x column spacing), so anisotropic pixels are
   handled before fitting (an axis-aligned scaling maps ellipses to ellipses);
3. a least-squares ellipse fit (scikit-image's EllipseModel, Halir & Flusser's direct method);
4. the perimeter by Ramanujan's (first) approximation, pi (3(a + b) - sqrt((3a + b)(a + 3b))), whose relative error
   is below 1e-5 for the axis ratios of fetal heads.

``inset_px``: where the labelled edge is known to lie outside the reference ellipse by a fixed number of pixels,
as with masks filled from a drawn outline (the reference runs along the middle of the drawn line, the filled mask
keeps its whole width), the HC is taken on the curve that many pixels inside. The inner parallel curve of a convex
curve at distance d has perimeter P - 2 pi d, exactly; d = inset_px x the pixel size (the geometric mean of the two
spacings, which is exact for square pixels). On Dataset032_HC18 the filled labels lie 1.40 +- 0.05 px outside the
csv's ellipse in every case, whatever the pixel size (see tests/test_real_domain_metrics.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.errors import AutosegError
from ..io.dataset import read_csv_rows

DEFINITION = ("HC: perimeter (Ramanujan) of a least-squares ellipse fitted, in mm, to the sub-pixel boundary of the "
              "largest connected component (holes filled); absolute difference = |HC(prediction) - reference| in mm "
              "(HC18's metric). Bias = prediction - reference; limits of agreement = bias +- 1.96 sd.")


def ramanujan_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a`` and ``b`` (Ramanujan's first approximation)."""
    return float(np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b))))


def head_boundary(mask: np.ndarray) -> np.ndarray:
    """(N, 2) sub-pixel boundary points (row, column) of the largest component of a 2D mask, holes filled;
    empty when the mask is."""
    from skimage.measure import find_contours

    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros((0, 2))
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n > 1:
        mask = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    mask = ndimage.binary_fill_holes(mask)
    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)  # padded: a head touching the border closes
    return max(contours, key=len) - 1.0


def fit_ellipse(points: np.ndarray) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """Least-squares ellipse through (N, 2) points: (centre, (a, b) semi-axes, angle), or None when the points
    define none (fewer than 5, collinear)."""
    from skimage.measure import EllipseModel

    points = np.asarray(points, float)
    if len(points) < 5:
        return None
    if hasattr(EllipseModel, "from_estimate"):  # scikit-image >= 0.26
        model = EllipseModel.from_estimate(points)
        if not model:
            return None
        (yc, xc), (a, b), theta = model.center, model.axis_lengths, model.theta
    else:  # older: estimate() and params
        model = EllipseModel()
        if not model.estimate(points):
            return None
        yc, xc, a, b, theta = model.params
    if not (np.isfinite([a, b]).all() and a > 0 and b > 0):
        return None
    return (float(yc), float(xc)), (float(a), float(b)), float(theta)


def head_circumference_mm(mask: np.ndarray, spacing, inset_px: float = 0.0) -> float | None:
    """HC in mm of a 2D mask whose pixels are ``spacing`` = (row, column) mm apart; None when nothing is found."""
    sp = np.asarray(spacing, float)
    if sp.shape != (2,):
        raise ValueError(f"spacing must be (row, column), got {spacing}")
    pts = head_boundary(mask)
    fit = fit_ellipse(pts * sp)
    if fit is None:
        return None
    hc = ramanujan_perimeter(*fit[1]) - 2 * np.pi * inset_px * float(np.sqrt(sp[0] * sp[1]))
    return float(hc) if hc > 0 else None


def parse_reference(spec: str, default_csv: Path | None) -> tuple[Path, str] | None:
    """``--hc-reference``: ``COLUMN`` (of the case table in use), ``CSV:COLUMN``, or ``none``."""
    if spec.strip().lower() == "none":
        return None
    csv_part, sep, column = spec.rpartition(":")
    if not sep:
        if default_csv is None:
            raise AutosegError(f"--hc-reference {spec}: no case table to read column '{spec}' from; name it as "
                               "CSV:COLUMN or pass --cases")
        return Path(default_csv), spec
    if not csv_part or not column:
        raise AutosegError(f"--hc-reference {spec}: give COLUMN, CSV:COLUMN or none")
    return Path(csv_part), column


def read_reference(csv_path: Path, column: str, cases: list[str]) -> dict[str, float]:
    """Reference HC (mm) per case from a column of a CSV with a 'case' column; every case in ``cases`` needs a
    positive number there."""
    if not csv_path.is_file():
        raise AutosegError(f"{csv_path}: head circumference table not found (--hc-reference CSV:COLUMN)")
    rows = read_csv_rows(csv_path)
    header = list(rows[0]) if rows else []
    if "case" not in header or column not in header:
        what = "'case'" if "case" not in header else f"'{column}'"
        raise AutosegError(f"{csv_path}: no column {what} (columns: {', '.join(header) or 'none'}); name the "
                           "reference as --hc-reference CSV:COLUMN")
    values = {r["case"].strip(): (r.get(column) or "").strip() for r in rows}
    missing = [c for c in cases if not values.get(c)]
    if missing:
        raise AutosegError(f"{csv_path}: no {column} for case(s) {missing[:5]}"
                           f"{' and %d more' % (len(missing) - 5) if len(missing) > 5 else ''}; add them, or "
                           "leave HC out with --hc-reference none")
    out = {}
    for c in cases:
        try:
            v = float(values[c])
        except ValueError:
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise AutosegError(f"{csv_path}: case {c} has {column} '{values[c]}', not a positive number of mm")
        out[c] = v
    return out


def case_hc(case: str, pred: np.ndarray, ref: np.ndarray, spacing3, values, inset_px: float) -> dict:
    """HC (mm) on the prediction and on the reference label of one case (label values ``values``)."""
    if pred.ndim != 3 or pred.shape[0] != 1:
        raise AutosegError(f"case {case}: head circumference needs 2D images, this one is {pred.shape[0]} slices "
                           f"of {pred.shape[1:]}; leave it out with --hc-reference none")
    sp = tuple(float(s) for s in spacing3[1:])
    return {"hc_pred_mm": head_circumference_mm(np.isin(pred[0], values), sp, inset_px),
            "hc_label_mm": head_circumference_mm(np.isin(ref[0], values), sp, inset_px),
            "pixel_mm": float(np.sqrt(sp[0] * sp[1]))}


def hc_section(rows: dict[str, dict], reference: dict[str, float], source: str, label: str,
               inset_px: float) -> dict:
    """The summary's ``head_circumference``: per-case rows and the agreement of the prediction's HC with the
    reference (HC18's numbers: mean absolute difference = ``mae``), and, as checks, of the reference label's HC
    with the reference and of the prediction's with the label's."""
    from .clinical import agreement

    per_case = []
    for case in sorted(rows):
        r, ref = rows[case], reference[case]
        p, lab = r["hc_pred_mm"], r["hc_label_mm"]
        per_case.append({"case": case, "hc_pred_mm": p, "hc_label_mm": lab, "hc_ref_mm": ref,
                         "abs_diff_mm": None if p is None else abs(p - ref), "pixel_mm": r["pixel_mm"]})
    col = {k: [r[k] for r in per_case] for k in ("hc_pred_mm", "hc_label_mm", "hc_ref_mm")}
    # how far (px, radially) the labelled edge lies outside the reference ellipse: P - P_ref = 2 pi d
    offsets = [(r["hc_label_mm"] - r["hc_ref_mm"]) / (2 * np.pi * r["pixel_mm"]) for r in per_case
               if r["hc_label_mm"] is not None]
    return {"method": DEFINITION, "reference": source, "label": label, "inset_px": inset_px,
            "agreement": {"prediction_vs_reference": agreement(col["hc_pred_mm"], col["hc_ref_mm"]),
                          "label_vs_reference": agreement(col["hc_label_mm"], col["hc_ref_mm"]),
                          "prediction_vs_label": agreement(col["hc_pred_mm"], col["hc_label_mm"])},
            "label_edge_offset_px": {"mean": float(np.mean(offsets)) if offsets else None,
                                     "std": float(np.std(offsets)) if offsets else None, "n": len(offsets)},
            "not_measured": [r["case"] for r in per_case if r["hc_pred_mm"] is None],
            "per_case": per_case}


HC_HEADERS = ["HC (mm)", "cases", "mean abs. difference", "bias", "95% limits of agreement", "r"]
_COMPARISONS = {"prediction_vs_reference": "prediction vs reference", "label_vs_reference": "label vs reference",
                "prediction_vs_label": "prediction vs label"}


def hc_rows(hc: dict) -> list[list]:
    """Table rows (terminal and report), one per comparison, in mm."""
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    return [[_COMPARISONS[k], a["n"], f(a["mae"], ".2f"), f(a["bias"], "+.2f"),
             "-" if a["loa_low"] is None else f"[{a['loa_low']:+.2f}, {a['loa_high']:+.2f}]",
             f(a["pearson_r"], ".4f")] for k, a in hc["agreement"].items()]
