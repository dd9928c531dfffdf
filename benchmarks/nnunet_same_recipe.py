"""nnU-Net's training recipe against autoseg's at one configuration and one iteration count, on a matrix fold.

    python -m benchmarks.nnunet_same_recipe ../shared/data/Dataset031_Hippocampus 3d_fullres 10m /tmp/same_hippo
    python -m benchmarks.nnunet_same_recipe ../shared/data/Dataset030_CAMUS 2d 10m /tmp/same_camus
    ... --iterations 20        # verification: both tools train 20 iterations (autoseg without its budget)

The question it answers: with the configuration fixed (autoseg's choice under BUDGET: spacing, patch, batch,
network) and the number of optimiser steps fixed, does nnU-Net's trainer (SGD with its poly schedule,
batchgeneratorsv2 augmentation, its sampling and loss) or autoseg's (under a budget: AdamW following the clock)
give the better model? Steps, each kept when finished (a ``<stage>.done`` marker, as in benchmarks.matrix):

1. the fold's split (``benchmarks.matrix.make_split``: patient-grouped, fold k of ``--folds``), as links;
2. ``autoseg plan TRAIN --budget BUDGET -c CONFIG --device cpu``;
3. ``autoseg train RUN -c CONFIG -f all`` under that budget (or ``--iterations N`` without it); its log.jsonl
   says how many iterations it trained;
4. ``nnUNetv2_plan_and_preprocess`` of the same training folder (linked as Dataset<ID>_<name> in OUT/nnunet/raw),
   then autoseg's configuration added to nnU-Net's plans as CONFIG_autoseg (benchmarks/nnunet_same_config.py)
   and preprocessed by nnU-Net;
5. nnU-Net's trainer on CONFIG_autoseg, fold all, for autoseg's iteration count (epochs of about 100
   iterations; benchmarks/nnunet_train.py, which avoids the trainer discovery that fails on the CPU torch);
6. ``nnUNetv2_predict`` and ``autoseg predict`` on the fold's test cases, both scored by ``autoseg evaluate``;
7. OUT/same_recipe.json and OUT/TABLE.md: per-class Dice, iterations, training seconds, for each recipe.

nnU-Net runs from its own venv (``--nnunet-venv``, default /tmp/nnunet_venv), and its dataset id defaults to
200 + the dataset's own number (231 for Hippocampus, 230 for CAMUS) so it never collides with a real one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from autoseg.core.jsonio import load_json, save_json
from autoseg.core.progress import format_table
from benchmarks.matrix.__main__ import (
    domain_figures,
    evaluate_args,
    evaluate_regions,
    make_split,
    run_stage,
    short_name,
    trained_steps,
)

HERE = Path(__file__).resolve().parent


def _autoseg() -> list[str]:
    return [sys.executable, "-m", "autoseg.cli"]


def epochs_for(iterations: int, per_epoch: int = 100) -> tuple[int, int]:
    """Split an iteration count into nnU-Net epochs of about ``per_epoch`` iterations (its per-epoch poly schedule
    then steps about as often as in the ACDC comparison); the product is within half an epoch of ``iterations``."""
    if iterations <= per_epoch:
        return 1, max(iterations, 1)
    epochs = max(1, round(iterations / per_epoch))
    return epochs, round(iterations / epochs)


def dataset_id(root: Path) -> int:
    m = re.match(r"Dataset(\d+)_", root.name)
    return 200 + int(m.group(1)) if m else 299


def check_same_axes(autoseg_plans: dict, nnunet_plans: dict) -> None:
    """Both tools must lay the axes out alike, or the added configuration's patch and kernels would be transposed."""
    ours, theirs = autoseg_plans.get("transpose_forward"), nnunet_plans.get("transpose_forward")
    if ours is not None and theirs is not None and list(ours) != list(theirs):
        raise SystemExit(f"same_recipe: autoseg transposes the axes as {ours}, nnU-Net as {theirs}; "
                         "nnunet_same_config.py copies patch and kernels unchanged: permute them for this dataset")


def nnunet_seconds(log: Path) -> float | None:
    m = re.findall(r"NNUNET_TRAIN .*train_seconds=([0-9.]+)", log.read_text())
    return float(m[-1]) if m else None


def autoseg_seconds(fold_run: Path) -> float:
    """Seconds of the epochs autoseg logged (training and its per-epoch validation, as nnU-Net's figure)."""
    rows = [json.loads(line) for line in (fold_run / "log.jsonl").read_text().splitlines() if line.strip()]
    return round(sum(r.get("epoch_seconds", 0.0) for r in rows), 1)


def dice_of(summary: dict) -> dict[str, float]:
    return {name: m["dice"]["mean"] for name, m in summary["mean"].items()}


def domain_text(domain: dict) -> str:
    """One cell for the table: HC's mean absolute difference and bias in mm, vessel F1, region Dice; '-' if none."""
    parts = []
    hc = domain.get("head_circumference")
    if hc:
        parts.append(f"HC abs. diff {hc['mae_mm']:.2f} mm (bias {hc['bias_mm']:+.2f}, n {hc['n']})")
    if domain.get("vessel"):
        parts.append(f"vessel F1 {domain['vessel']['f1']:.3f}")
    if domain.get("regions"):
        parts.append("; ".join(f"{k} {v:.3f}" for k, v in domain["regions"].items()))
    return "; ".join(parts) or "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.nnunet_same_recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, help="dataset folder (nnU-Net raw layout), e.g. ../shared/data/Dataset031_…")
    ap.add_argument("configuration", help="2d or 3d_fullres")
    ap.add_argument("budget", help="autoseg's budget, e.g. 10m: it chooses the configuration and, without "
                                   "--iterations, how long autoseg trains")
    ap.add_argument("out", type=Path)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--iterations", type=int, help="train both for this many iterations (autoseg without its budget)")
    ap.add_argument("--id", type=int, help="nnU-Net dataset id (default 200 + the dataset's number)")
    ap.add_argument("--nnunet-venv", type=Path, default=Path(os.environ.get("NNUNET_VENV", "/tmp/nnunet_venv")))
    ap.add_argument("-j", "--workers", type=int, default=2, help="preprocessing processes for both tools")
    a = ap.parse_args(argv)
    root, cfg, out = a.dataset.resolve(), a.configuration, a.out.resolve()
    venv = a.nnunet_venv
    if not (venv / "bin" / "nnUNetv2_plan_and_preprocess").is_file():
        print(f"same_recipe: no nnU-Net in {venv}; create it as benchmarks/nnunet_acdc.sh's header says, or set "
              "--nnunet-venv")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    train_ds, test, info = make_split(root, out, a.fold, a.folds)
    did = a.id or dataset_id(root)
    name = f"Dataset{did:03d}_{short_name(root)}f{a.fold}"
    nn = out / "nnunet"
    os.environ.update(nnUNet_raw=str(nn / "raw"), nnUNet_preprocessed=str(nn / "pre"), nnUNet_results=str(nn / "res"))
    for d in ("raw", "pre", "res"):
        (nn / d).mkdir(parents=True, exist_ok=True)
    if not (nn / "raw" / name).is_symlink():
        os.symlink(train_ds, nn / "raw" / name)
    run, times = out / "run", {}
    fold_run = run / cfg / "fold_all"

    run_stage("plan", _autoseg() + ["plan", str(train_ds), "--out", str(run), "--budget", a.budget, "--device",
                                    "cpu", "-c", cfg, "-j", str(a.workers)], out, times)
    if a.iterations:
        e, i = epochs_for(a.iterations)
        how = ["--epochs", str(e), "--iters-per-epoch", str(i), "--val-iters", "2"]
    else:
        how = []  # the planned budget: AdamW, the learning rate following the clock
    run_stage("autoseg_train", _autoseg() + ["train", str(run), "-c", cfg, "-f", "all", "--no-validation"] + how,
              out, times)
    iterations = trained_steps(fold_run)

    venv_bin = venv / "bin"
    run_stage("nnunet_plan", [str(venv_bin / "nnUNetv2_plan_and_preprocess"), "-d", str(did), "-c", cfg, "-np",
                              str(a.workers)], out, times)
    plans_path = nn / "pre" / name / "nnUNetPlans.json"
    ours = load_json(run / "plans.json")
    check_same_axes(ours, load_json(plans_path))
    same = f"{cfg}_autoseg"
    if same not in load_json(plans_path)["configurations"]:
        run_stage("same_config", [sys.executable, str(HERE / "nnunet_same_config.py"), str(run / "plans.json"),
                                  str(plans_path), "--config", cfg, "--name", same], out, times)
    run_stage("nnunet_preprocess", [str(venv_bin / "nnUNetv2_preprocess"), "-d", str(did), "-c", same, "-np",
                                    str(a.workers)], out, times)
    e, i = epochs_for(iterations)
    run_stage("nnunet_train", [str(venv_bin / "python"), str(HERE / "nnunet_train.py"), str(did), same, "all",
                               "--epochs", str(e), "--iters", str(i), "--val-iters", "2", "--no-validation"],
              out, times)
    preds = {"nnunet": out / "pred_nnunet", "autoseg": out / "pred_autoseg"}
    run_stage("nnunet_predict", [str(venv_bin / "nnUNetv2_predict"), "-d", str(did), "-c", same, "-f", "all", "-i",
                                 str(test / "imagesTs"), "-o", str(preds["nnunet"]), "-device", "cpu", "-npp", "1",
                                 "-nps", "1"], out, times)
    run_stage("autoseg_predict", _autoseg() + ["predict", str(run), "-i", str(test / "imagesTs"), "-o",
                                               str(preds["autoseg"]), "-c", cfg, "-f", "all"], out, times)
    # the matrix's domain metric (HC18's circumference, DRIVE's vessel F1; AUC needs probabilities, which neither
    # run saves here) and regions (BraTS), for both recipes alike
    metric_args = evaluate_args(test)
    domain, dice = {}, {}
    for tool, pred in preds.items():
        run_stage(f"evaluate_{tool}", _autoseg() + ["evaluate", str(pred), str(test / "labelsTs"), "--dataset-json",
                                                    str(test / "dataset.json"), "--out", str(out / f"eval_{tool}")]
                  + metric_args, out, times)
        summary = load_json(out / f"eval_{tool}" / "summary.json")  # read once: Dice and the domain metric
        dice[tool], domain[tool] = dice_of(summary), domain_figures(summary)
        regions = evaluate_regions(short_name(root), out, test, pred, times, tag=f"_{tool}")
        if regions is not None:
            domain[tool]["regions"] = regions

    c = ours["configurations"][cfg]
    rows = {
        "nnU-Net trainer": {"iterations": e * i, "train_seconds": nnunet_seconds(out / "nnunet_train.log"),
                            "stage_seconds": times["nnunet_train"], "dice": dice["nnunet"],
                            "domain": domain["nnunet"]},
        "autoseg": {"iterations": iterations, "train_seconds": autoseg_seconds(fold_run),
                    "stage_seconds": times["autoseg_train"], "dice": dice["autoseg"],
                    "budget": None if a.iterations else a.budget, "domain": domain["autoseg"]},
    }
    for r in rows.values():
        r["mean_dice"] = round(sum(r["dice"].values()) / max(len(r["dice"]), 1), 4)
    result = {"dataset": short_name(root), "fold": a.fold, "folds": a.folds, **info, "configuration": cfg,
              "plan": {"spacing": c["spacing"], "patch_size": c["patch_size"], "batch_size": c["batch_size"],
                       "features_per_stage": c["architecture"]["arch_kwargs"]["features_per_stage"]},
              "budget": a.budget, "iterations_asked": a.iterations, "stage_seconds": times, "recipes": rows}
    save_json(result, out / "same_recipe.json")
    classes = list(rows["autoseg"]["dice"])
    head = ["recipe"] + [f"Dice {k}" for k in classes] + ["mean", "domain metric", "iterations", "train s (epochs)",
                                                          "stage s"]
    table = [[k] + [f"{r['dice'].get(n, float('nan')):.3f}" for n in classes] + [f"{r['mean_dice']:.3f}",
             domain_text(r["domain"]), r["iterations"], f"{r['train_seconds'] or 0:.1f}", f"{r['stage_seconds']:.1f}"]
             for k, r in rows.items()]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(str(x) for x in row) + " |" for row in table]
    (out / "TABLE.md").write_text("\n".join(md) + "\n")
    print(f"{short_name(root)} fold {a.fold}, {cfg} {c['patch_size']} x {c['batch_size']}, spacing {c['spacing']}:")
    print(format_table(head, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
