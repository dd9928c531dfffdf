"""Metrics for thin structures (retinal vessels, DRIVE-style), as that literature reports them.

Per case, from the pixel confusion matrix of one label (TP, FP, FN, TN): sensitivity TP / (TP + FN), specificity
TN / (TN + FP), accuracy (TP + TN) / all, and Dice = F1 = 2 TP / (2 TP + FP + FN); and, where the prediction's
class probabilities were saved (``autoseg predict --save-probabilities`` writes ``<case>.npz`` beside the label
map), the area under the ROC curve of that label's probability, ties counted as one half (the Mann-Whitney
statistic). Summary: mean and sd over cases, and the same ratios from the confusion matrices summed over all cases
("pooled", as papers that score all test pixels together report them).

Pixels: the whole image, less any ignore-labelled reference pixels. DRIVE papers usually score inside the field of
view (FOV) mask only; without it, specificity and accuracy come out higher (the dark surround is easy background),
so give the surround the ignore label to reproduce FOV-restricted numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from ..core.errors import AutosegError
from .metrics import mean_std

SCORES = ("dice", "sensitivity", "specificity", "accuracy", "auc")
DEFINITION = ("Vessel metrics over all pixels (less ignore-labelled ones; DRIVE papers often use the FOV mask "
              "only): sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy (TP+TN)/N, Dice = F1 = "
              "2TP/(2TP+FP+FN); AUC of the ROC curve from the saved probabilities (<case>.npz), ties counted "
              "half. Pooled: from the confusion matrices summed over cases.")


def confusion(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray | None = None) -> dict[str, int]:
    """Pixel counts TP, FP, FN, TN of two boolean masks, over ``valid`` pixels (all when None)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if valid is not None:
        pred, ref = pred[valid], ref[valid]
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(pred.size) - tp - fp - fn}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def scores(c: dict[str, int]) -> dict[str, float | None]:
    """Sensitivity, specificity, accuracy and Dice from a confusion matrix; None where the denominator is 0."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "accuracy": _ratio(tp + tn, tp + fp + fn + tn), "dice": _ratio(2 * tp, 2 * tp + fp + fn)}


def roc_auc(score: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve: the probability that a random positive pixel scores above a random negative one
    (ties: one half), from average ranks. None when either class is absent."""
    s = np.asarray(score, np.float64).ravel()
    t = np.asarray(truth, bool).ravel()
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)  # ties get their average rank
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def probabilities_path(pred_path: Path, ending: str) -> Path:
    """Where ``autoseg predict --save-probabilities`` put the probabilities of this label map."""
    return pred_path.with_name(pred_path.name[: -len(ending)] + ".npz")


def read_probability(path: Path, case: str, channel, shape: tuple[int, ...]) -> np.ndarray:
    """The probability map of one output channel (a label value, or a region's name) from ``<case>.npz``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, names = z["probabilities"], list(z["labels"])
    except (OSError, ValueError, KeyError) as e:
        raise AutosegError(f"case {case}: {path} is not a probabilities file of `autoseg predict "
                           f"--save-probabilities` ({e}); predict again or remove it") from None
    key = [str(n) for n in names]
    if str(channel) not in key:
        raise AutosegError(f"case {case}: {path} has no channel for label {channel} (it holds {key})")
    p = probs[key.index(str(channel))]
    if p.shape != tuple(shape):
        raise AutosegError(f"case {case}: probabilities in {path} have shape {p.shape}, the label map {shape}; "
                           "they come from another prediction: predict again with --save-probabilities")
    return p


def case_vessels(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray, value, prob: np.ndarray | None) -> dict:
    """Counts, scores and (given the label's probability map) AUC of one case."""
    p, r = np.isin(pred, value), np.isin(ref, value)
    c = confusion(p, r, valid)
    auc = roc_auc(prob[valid], r[valid]) if prob is not None else None
    return {**c, **scores(c), "auc": auc, "probabilities": prob is not None}


def vessel_section(rows: dict[str, dict], label: str) -> dict:
    """The summary's ``vessels``: per case, means (sd, n) and pooled ratios."""
    per_case = [{"case": c, **rows[c]} for c in sorted(rows)]
    total = {k: sum(r[k] for r in per_case) for k in ("tp", "fp", "fn", "tn")}
    return {"label": label, "definition": DEFINITION,
            "mean": {k: mean_std([r[k] for r in per_case]) for k in SCORES},
            "pooled": {**total, **scores(total)},
            "cases_without_probabilities": [r["case"] for r in per_case if not r["probabilities"]],
            "per_case": per_case}


VESSEL_HEADERS = ["", "Dice (F1)", "sensitivity", "specificity", "accuracy", "AUC", "n"]


def vessel_rows(v: dict) -> list[list]:
    """Table rows (terminal and report): mean ± sd over cases, and the pooled ratios."""
    def mean(m):
        return "-" if m["mean"] is None else f"{m['mean']:.4f} ± {m['std']:.4f}"

    pooled = v["pooled"]
    return [["mean ± sd"] + [mean(v["mean"][k]) for k in SCORES] + [v["mean"]["dice"]["n"]],
            ["pooled"] + ["-" if pooled[k] is None else f"{pooled[k]:.4f}" for k in SCORES[:4]]
            + ["-", len(v["per_case"])]]
