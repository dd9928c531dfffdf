"""A self-contained HTML report (images embedded) plus the PNG/GIF files it shows.

Metric tables per structure and phase, box plots of Dice and HD95, Bland-Altman and scatter plots of the clinical
indices, and for the best, median and worst cases (by mean foreground Dice) an overlay of image | reference |
prediction on representative slices and an animated GIF through the stack.
"""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import numpy as np

from ..core.files import atomic_write_bytes
from ..io.images import read_case_images, read_label
from .head_circumference import HC_HEADERS, hc_rows
from .vessels import VESSEL_HEADERS, vessel_rows

COLORS = np.array([[0, 0, 0], [230, 60, 50], [255, 205, 40], [50, 110, 255], [40, 200, 90], [200, 80, 220]],
                  float) / 255


def _colour(v) -> tuple:
    """A label's legend colour (a region takes its highest value's)."""
    v = max(v) if isinstance(v, list) else v
    return tuple(int(255 * c) for c in COLORS[min(v, len(COLORS) - 1)])


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    atomic_write_bytes(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(fig)
    return path


def _box_plots(summary: dict, out: Path) -> Path:
    plt = _plt()
    names = list(summary["mean"])
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for a, metric, title in ((ax[0], "dice", "Dice"), (ax[1], "hd95_mm", "HD95 (mm)")):
        data = [[r[n][metric] for r in summary["per_case"] if r[n][metric] is not None] for n in names]
        a.boxplot(data, showmeans=True)
        a.set_xticks(range(1, len(names) + 1), names)
        a.set_title(title)
        a.grid(alpha=0.3)
    return _save(fig, out / "boxplots.png")


def _agreement_plots(clin: dict, out: Path, name: str = "agreement.png") -> Path | None:
    plt = _plt()
    # stroke volumes are differences of the plotted volumes: left out to keep the page short
    keys = [k for k, a in clin["agreement"].items() if a["n"] >= 2 and not k.endswith("_SV_ml")]
    if not keys:
        return None
    fig, ax = plt.subplots(len(keys), 2, figsize=(9, 3.0 * len(keys)), squeeze=False)
    for i, k in enumerate(keys):
        pairs = [(r["pred"].get(k), r["ref"].get(k)) for r in clin["per_patient"]]
        pairs = [(p, r) for p, r in pairs if p is not None and r is not None]
        p, r = np.array(pairs).T
        ag = clin["agreement"][k]
        lo, hi = min(p.min(), r.min()), max(p.max(), r.max())
        ax[i, 0].scatter(r, p, s=14)
        ax[i, 0].plot([lo, hi], [lo, hi], "k--", lw=0.8)
        rtxt = "-" if ag["pearson_r"] is None else f"{ag['pearson_r']:.3f}"
        ax[i, 0].set_title(f"{k}: r = {rtxt}", fontsize=9)
        ax[i, 0].set_xlabel("reference")
        ax[i, 0].set_ylabel("prediction")
        m, d = (p + r) / 2, p - r
        ax[i, 1].scatter(m, d, s=14)
        for y, style in ((ag["bias"], "-"), (ag["loa_low"], "--"), (ag["loa_high"], "--")):
            ax[i, 1].axhline(y, color="k", ls=style, lw=0.8)
        ax[i, 1].set_title(f"{k}: bias {ag['bias']:+.2f}, LoA [{ag['loa_low']:+.2f}, {ag['loa_high']:+.2f}]",
                           fontsize=9)
        ax[i, 1].set_xlabel("mean of both")
        ax[i, 1].set_ylabel("prediction - reference")
    fig.tight_layout()
    return _save(fig, out / name)


def _overlay(img2d: np.ndarray, lab2d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    g = np.clip((img2d - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(g[..., None], 3, -1)
    col = COLORS[np.clip(lab2d, 0, len(COLORS) - 1)]
    m = lab2d > 0
    rgb[m] = 0.45 * rgb[m] + 0.55 * col[m]
    return rgb


def _case_figures(case: str, image_files: list[Path] | None, ref_path: Path, pred_path: Path, out: Path,
                  title: str) -> tuple[Path, Path | None]:
    plt = _plt()
    ref, _ = read_label(ref_path, case)
    pred, _ = read_label(pred_path, case)
    if image_files:
        data = read_case_images(image_files, case)[0]
        # a colour file (RGB, RGBA) is shown as its luminance: the red channel alone is saturated in photographs
        # such as fundus images, and a coloured background would hide the label colours
        img = np.tensordot([0.299, 0.587, 0.114], data[:3], 1) if data.shape[0] in (3, 4) else data[0]
    else:
        img = np.zeros(ref.shape, np.float32)
    lo, hi = np.percentile(img, [1, 99.5])
    fg = (ref > 0).sum((1, 2))
    zs = np.flatnonzero(fg) if fg.any() else np.arange(ref.shape[0])
    picks = sorted(set(int(zs[int(round(q * (len(zs) - 1)))]) for q in (0.15, 0.5, 0.85)))
    fig, ax = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)), squeeze=False)
    for i, z in enumerate(picks):
        for j, (t, lab) in enumerate((("image", None), ("reference", ref), ("prediction", pred))):
            ax[i, j].imshow(_overlay(img[z], lab[z], lo, hi) if lab is not None else img[z], cmap="gray",
                            vmin=lo, vmax=hi)
            ax[i, j].set_title(f"{t}, slice {z}", fontsize=9)
            ax[i, j].axis("off")
    fig.suptitle(title, fontsize=10)
    png = _save(fig, out / f"case_{case}.png")
    gif = None
    if ref.shape[0] > 1:
        from matplotlib.animation import FuncAnimation, PillowWriter
        fig, ax = plt.subplots(1, 3, figsize=(9, 3.2))
        ims = []
        for j in range(3):
            ims.append(ax[j].imshow(np.zeros(ref.shape[1:] + (3,))))
            ax[j].set_title(("image", "reference", "prediction")[j], fontsize=9)
            ax[j].axis("off")

        def frame(z):
            for j, lab in enumerate((None, ref, pred)):
                ims[j].set_data(_overlay(img[z], lab[z] if lab is not None else np.zeros_like(ref[z]), lo, hi))
            fig.suptitle(f"{case} slice {z}", fontsize=9)
            return ims

        anim = FuncAnimation(fig, frame, frames=ref.shape[0])
        gif = out / f"case_{case}.gif"
        atomic_write_bytes(gif, lambda tmp: anim.save(tmp, writer=PillowWriter(fps=3)), suffix=".gif")
        plt.close(fig)
    return png, gif


def _img_tag(path: Path, alt: str) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _table(headers, rows) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _m(m: dict, d: int) -> str:
    return "-" if m["mean"] is None else f"{m['mean']:.{d}f} ± {m['std']:.{d}f}"


def write_report(summary: dict, pred_dir: Path, labels_dir: Path, out_dir: Path,
                 images_dir: Path | None, file_ending: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(summary["mean"])
    sections = [f"<h1>Segmentation report</h1><p>{summary['num_cases']} cases; predictions <code>"
                f"{html.escape(str(pred_dir))}</code> vs reference <code>{html.escape(str(labels_dir))}</code>; "
                f"made {time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    rows = []
    for group, means in [("all", summary["mean"])] + list(summary.get("mean_by_phase", {}).items()):
        for n in names:
            m = means[n]
            rows.append([n, group, _m(m["dice"], 3), _m(m["iou"], 3), _m(m["hd95_mm"], 2), _m(m["assd_mm"], 2),
                         m["dice"]["n"]])
    sections.append("<h2>Metrics per structure and phase</h2>" + _table(
        ["structure", "phase", "Dice", "IoU", "HD95 (mm)", "ASSD (mm)", "n"], rows)
        + f"<p class=note>{html.escape(summary['metrics_definition'])}</p>")
    sections.append("<h2>Distribution per structure</h2>" + _img_tag(_box_plots(summary, out_dir), "box plots"))
    clin = summary.get("clinical")
    if clin:
        arows = [[k, a["n"], "-" if a["pearson_r"] is None else f"{a['pearson_r']:.3f}", f"{a['bias']:+.2f}",
                  f"[{a['loa_low']:+.2f}, {a['loa_high']:+.2f}]", f"{a['mae']:.2f}"]
                 for k, a in clin["agreement"].items() if a["n"]]
        keys = [k for k, a in clin["agreement"].items() if a["n"]]
        prow = [[r["patient"]] + [f"{r['ref'].get(k):.1f} / {r['pred'].get(k):.1f}"
                                  if r["ref"].get(k) is not None and r["pred"].get(k) is not None else "-"
                                  for k in keys] for r in clin["per_patient"]]
        sections.append(f"<h2>Clinical indices</h2><p>{html.escape(clin['method'])}. Bias = prediction - reference; "
                        "limits of agreement = bias ± 1.96 sd.</p>"
                        + _table(["index", "patients", "Pearson r", "bias", "95% limits of agreement", "MAE"], arows))
        plot = _agreement_plots(clin, out_dir)
        if plot:
            sections.append(_img_tag(plot, "Bland-Altman and scatter plots"))
        sections.append("<details><summary>per patient (reference / prediction)</summary>"
                        + _table(["patient"] + keys, prow) + "</details>")
    sections += _domain_sections(summary, out_dir)
    scored = [(np.mean([r[n]["dice"] for n in names if r[n]["dice"] is not None] or [0]), r["case"])
              for r in summary["per_case"]]
    scored.sort()
    if scored:
        picks = {"worst": scored[0], "median": scored[len(scored) // 2], "best": scored[-1]}
        legend = " ".join(
            f'<span style="display:inline-block;width:1em;height:1em;background:rgb'
            f'{_colour(v)}"></span>'
            f' {html.escape(n)}' for n, v in summary["labels"].items() if v != 0 and n != "ignore")
        sections.append(f"<h2>Best, median and worst cases</h2><p>Colours: {legend}. Slices at 15%, 50% and 85% "
                        "of the reference structure's extent; the animation runs through the whole stack.</p>")
        for label, (score, case) in picks.items():
            files = None
            if images_dir is not None:
                cand = [images_dir / f"{case}_{c:04d}{file_ending}" for c in range(8)]
                files = [f for f in cand if f.is_file()][:1] or None
            png, gif = _case_figures(case, files, labels_dir / f"{case}{file_ending}",
                                     pred_dir / f"{case}{file_ending}", out_dir,
                                     f"{label}: {case} (mean foreground Dice {score:.3f})")
            sections.append(f"<h3>{label}: {html.escape(case)} (mean Dice {score:.3f})</h3>"
                            + _img_tag(png, f"{label} case overlay") + (_img_tag(gif, f"{label} case stack")
                                                                        if gif else ""))
    page = _PAGE.replace("{body}", "\n".join(sections))
    path = out_dir / "report.html"
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(page))
    return path


def _num(x, d: int = 2) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _domain_sections(summary: dict, out_dir: Path) -> list[str]:
    """Head circumference (agreement table, Bland-Altman plot, per case) and vessel metrics, where present."""
    out = []
    hc = summary.get("head_circumference")
    if hc:
        inset = f"; measured {hc['inset_px']:g} px inside the segmented edge" if hc["inset_px"] else ""
        off = hc["label_edge_offset_px"]
        note = (f" The reference labels' edge lies {off['mean']:+.2f} ± {off['std']:.2f} px (radially) outside the "
                f"reference ellipse{' after the inset' if hc['inset_px'] else ''}." if off["n"] else "")
        out.append(f"<h2>Head circumference</h2><p>Head: {html.escape(hc['label'])}; reference: <code>"
                   f"{html.escape(hc['reference'])}</code>{html.escape(inset)}. {html.escape(hc['method'])}"
                   f"{html.escape(note)}</p>" + _table(HC_HEADERS, hc_rows(hc)))
        pairs = [r for r in hc["per_case"] if r["hc_pred_mm"] is not None]
        as_clin = {"agreement": {"HC (mm)": hc["agreement"]["prediction_vs_reference"]},
                   "per_patient": [{"pred": {"HC (mm)": r["hc_pred_mm"]}, "ref": {"HC (mm)": r["hc_ref_mm"]}}
                                   for r in pairs]}
        plot = _agreement_plots(as_clin, out_dir, "hc_agreement.png")
        if plot:
            out.append(_img_tag(plot, "head circumference: Bland-Altman and scatter plots"))
        rows = [[r["case"], _num(r["hc_ref_mm"]), _num(r["hc_label_mm"]), _num(r["hc_pred_mm"]),
                 _num(r["abs_diff_mm"])] for r in hc["per_case"]]
        out.append("<details><summary>per case (mm)</summary>" + _table(
            ["case", "reference", "label", "prediction", "|prediction - reference|"], rows) + "</details>")
    v = summary.get("vessels")
    if v:
        out.append(f"<h2>Vessel metrics: {html.escape(v['label'])}</h2><p class=note>{html.escape(v['definition'])}"
                   "</p>" + _table(VESSEL_HEADERS, vessel_rows(v)))
        rows = [[r["case"]] + [_num(r[k], 4) for k in ("dice", "sensitivity", "specificity", "accuracy", "auc")]
                for r in v["per_case"]]
        out.append("<details><summary>per case</summary>" + _table(
            ["case", "Dice (F1)", "sensitivity", "specificity", "accuracy", "AUC"], rows) + "</details>")
    return out


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>autoseg report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.note{color:#666;font-size:90%}code{font-size:85%}
</style></head>
<body>
{body}
<script>
// records how many images decoded, for automated checks of the page
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-loaded', ok);
});
</script>
</body></html>
"""
