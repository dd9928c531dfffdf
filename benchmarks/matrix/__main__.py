"""The budget procedure over every dataset in ../shared/data, scored by patient-grouped K-fold cross-validation.

    python -m benchmarks.matrix                         # every dataset, 3 folds, ACDC 20 minutes, others 10
    python -m benchmarks.matrix HC18 DRIVE --folds 3    # a subset by name (case-insensitive, part of the name)
    python -m benchmarks.matrix --table                 # only rewrite the table from the results kept so far

Fold k of a dataset holds out every K-th patient in sorted order starting at position k (cases.csv's `patient`, or
each case its own patient) and runs, on the others, what a user with that budget runs:
``autoseg plan TRAIN --budget B --device cpu`` (the plan recommends the configuration), ``autoseg train RUN -f all``,
``autoseg predict`` on the held-out patients and ``autoseg evaluate`` against their labels (with the domain metric
where the dataset has one). Each finished fold leaves one small JSON in ``--results`` (committed: the plan, the
steps planned and trained, stage times, per-class Dice, the domain metric, the load average around it), and a
rerun keeps it; within a fold each finished stage is kept too, so a kill loses at most the stage it hit (training
resumes from its last checkpoint). The heavy files (split links, preprocessed data, checkpoints, predictions) live
under ``--work``. The table (``--results``/TABLE.md) puts the mean and fold spread beside published references
(``references.json``: figures from full training, with their sources).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from autoseg.core.jsonio import load_json, save_json
from autoseg.core.progress import format_table
from autoseg.io.dataset import load_dataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
BUDGETS = {"ACDC": "20m"}  # the targets: 20 CPU minutes per fold for ACDC, 10 for the others
DEFAULT_BUDGET = "10m"
STAGES = ("plan", "train", "predict", "evaluate")


def short_name(root: Path) -> str:
    """Dataset027_ACDC -> ACDC."""
    return re.sub(r"^Dataset\d+_", "", root.name)


def find_datasets(data: Path, names: list[str]) -> list[Path]:
    roots = sorted(p for p in data.glob("Dataset*") if (p / "dataset.json").is_file())
    if not names:
        return roots
    picked = [r for r in roots if any(n.lower() in r.name.lower() for n in names)]
    missing = [n for n in names if not any(n.lower() in r.name.lower() for r in roots)]
    if missing:
        sys.exit(f"matrix: no dataset in {data} matches {missing}; there are {[short_name(r) for r in roots]}")
    return picked


def fold_patients(groups: dict[str, str], k: int, n_folds: int) -> set[str]:
    """Held-out patients of fold k: every n_folds-th patient in sorted order from position k."""
    patients = sorted(set(groups.values()))
    return set(patients[k::n_folds])


def _link_case(src_dir: Path, dst_dir: Path, case: str, ending: str, channels: bool) -> None:
    pattern = re.compile(re.escape(case) + (r"_\d{4}" if channels else "") + re.escape(ending) + "$")
    dst_dir.mkdir(parents=True, exist_ok=True)
    found = [f for f in os.listdir(src_dir) if pattern.fullmatch(f)]
    if not found:
        raise SystemExit(f"matrix: case {case}: no file in {src_dir}")
    for f in found:
        dst = dst_dir / f
        if not dst.is_symlink():
            os.symlink((src_dir / f).resolve(), dst)


def _write_subset(root: Path, out: Path, cases: list[str], images: str, labels: str) -> None:
    """A dataset folder of symbolic links to ``cases`` of ``root`` (nothing is copied), with its dataset.json and
    the matching rows of cases.csv."""
    dj = load_json(root / "dataset.json")
    ending = dj["file_ending"]
    for c in cases:
        _link_case(root / "imagesTr", out / images, c, ending, channels=True)
        _link_case(root / "labelsTr", out / labels, c, ending, channels=False)
    save_json({**dj, "numTraining": len(cases)}, out / "dataset.json")
    table = root / "cases.csv"
    if table.is_file():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = set(cases)
        with open(out / "cases.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(r for r in rows if r["case"] in keep)


def make_split(root: Path, fold_dir: Path, k: int, n_folds: int) -> tuple[Path, Path, dict]:
    """The fold's training dataset (nnU-Net raw layout) and test folder (imagesTs/labelsTs), as links."""
    ds = load_dataset(root)
    held = fold_patients(ds.groups, k, n_folds)
    test = [c for c in ds.cases if ds.groups[c] in held]
    train = [c for c in ds.cases if ds.groups[c] not in held]
    split = fold_dir / "split"
    tr, te = split / f"{root.name}_fold{k}", split / "test"
    if not (split / "split.json").is_file():
        shutil.rmtree(split, ignore_errors=True)
        _write_subset(root, tr, train, "imagesTr", "labelsTr")
        _write_subset(root, te, test, "imagesTs", "labelsTs")
        save_json({"train_cases": train, "test_cases": test, "test_patients": sorted(held)}, split / "split.json")
    info = {"train_patients": len(set(ds.groups[c] for c in train)), "test_patients": len(held),
            "train_cases": len(train), "test_cases": len(test)}
    return tr, te, info


def run_stage(name: str, cmd: list[str], fold_dir: Path, times: dict) -> None:
    """Run one stage unless its marker says it finished; its output goes to fold_dir/<name>.log."""
    done = fold_dir / f"{name}.done"
    if done.is_file():
        times[name] = float(done.read_text() or 0)
        return
    print(f"  {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    with open(fold_dir / f"{name}.log", "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = (fold_dir / f"{name}.log").read_text().splitlines()[-15:]
        raise RuntimeError(f"{name} failed (exit {rc}); see {fold_dir / (name + '.log')}:\n" + "\n".join(tail))
    times[name] = round(time.time() - t0, 1)
    done.write_text(str(times[name]))


def evaluate_args(test: Path) -> list[str]:
    """The domain metric a dataset's own table asks for: head circumference where cases.csv has the reference
    (HC18's hc_mm), vessel metrics for a dataset whose only structure is a vessel (DRIVE)."""
    args: list[str] = []
    table = test / "cases.csv"
    if table.is_file():
        header = table.read_text().splitlines()[0].split(",")
        if "hc_mm" in header:
            # HC18's filled labels lie 1.4 px outside the reference ellipse (the drawn outline's width: measured
            # on all 300 labels, docs/evaluation.md); a model learns that edge, so HC is measured 1.4 px inside it
            args += ["--hc-reference", f"{table}:hc_mm", "--hc-inset-px", "1.4"]
    labels = load_json(test / "dataset.json")["labels"]
    vessels = [v for k, v in labels.items() if "vessel" in k.lower()]
    if vessels:
        args += ["--vessel-label", str(vessels[0])]
    return args


def region_labels(name: str) -> dict | None:
    """A dataset's published metric scored on regions (unions of labels; BraTS: whole tumour, tumour core,
    enhancing tumour), from references.json: the labels block of a dataset.json that declares them, or None."""
    ref = _references().get(name) or {}
    if not ref.get("regions"):
        return None
    return {"labels": {"background": 0, **ref["regions"]}, "regions_class_order": ref["regions_class_order"]}


def evaluate_regions(name: str, fold_dir: Path, test: Path, pred: Path, times: dict, tag: str = "") -> dict | None:
    """Score the fold's predictions on the dataset's regions (a second `autoseg evaluate`, with a dataset.json
    that declares them); {region: mean Dice} or None where the dataset has none. ``tag`` names the stage and its
    output apart where one folder scores several sets of predictions."""
    regions = region_labels(name)
    if regions is None:
        return None
    dj = fold_dir / "regions" / "dataset.json"
    dj.parent.mkdir(parents=True, exist_ok=True)
    save_json({**load_json(test / "dataset.json"), **regions}, dj)
    ev = fold_dir / f"eval_regions{tag}"
    run_stage(f"evaluate_regions{tag}", _autoseg() + ["evaluate", str(pred), str(test / "labelsTs"), "--dataset-json",
                                                str(dj), "--out", str(ev)], fold_dir, times)
    return {r: m["dice"]["mean"] for r, m in load_json(ev / "summary.json")["mean"].items()}


def _autoseg() -> list[str]:
    return [sys.executable, "-m", "autoseg.cli"]


def run_fold(root: Path, k: int, n_folds: int, budget: str, work: Path, config: str | None) -> dict:
    fold_dir = work / short_name(root) / f"fold{k}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    train_ds, test, info = make_split(root, fold_dir, k, n_folds)
    run, pred, ev = fold_dir / "run", fold_dir / "pred", fold_dir / "eval"
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    times: dict[str, float] = {}
    c = ["-c", config] if config else []
    run_stage("plan", _autoseg() + ["plan", str(train_ds), "--out", str(run), "--budget", budget, "--device", "cpu"]
              + c, fold_dir, times)
    plans = load_json(run / "plans.json")
    chosen = config or plans["recommendation"]["configuration"]
    resume = ["--resume"] if (run / chosen / "fold_all" / "checkpoint_latest.pt").is_file() else []
    run_stage("train", _autoseg() + ["train", str(run), "-f", "all"] + c + resume, fold_dir, times)
    metric_args = evaluate_args(test)
    probs = ["--save-probabilities"] if "--vessel-label" in metric_args else []  # vessel AUC needs them
    run_stage("predict", _autoseg() + ["predict", str(run), "-i", str(test / "imagesTs"), "-o", str(pred), "-f",
                                       "all", "-c", chosen] + probs, fold_dir, times)
    run_stage("evaluate", _autoseg() + ["evaluate", str(pred), str(test / "labelsTs"), "--dataset-json",
                                        str(test / "dataset.json"), "--out", str(ev)] + metric_args,
              fold_dir, times)
    res = fold_result(root, k, n_folds, budget, plans, chosen, run, ev, times, info, load_start, started)
    regions = evaluate_regions(short_name(root), fold_dir, test, pred, times)
    if regions is not None:
        res["domain"]["regions"] = regions
    return res


def trained_steps(fold_run: Path) -> int:
    log = fold_run / "log.jsonl"
    return sum(json.loads(line).get("iterations", 0) for line in log.read_text().splitlines() if line.strip())


def domain_figures(summary: dict) -> dict:
    """The domain metric's headline figures from `autoseg evaluate`'s summary.json."""
    out = {}
    hc = summary.get("head_circumference")
    if hc:
        a = hc["agreement"]["prediction_vs_reference"]
        out["head_circumference"] = {"mae_mm": a["mae"], "bias_mm": a["bias"], "n": a["n"],
                                     "inset_px": hc["inset_px"], "not_measured": len(hc["not_measured"])}
    v = summary.get("vessels")
    if v:
        out["vessel"] = {k: v["mean"][key]["mean"] for k, key in (("f1", "dice"), ("auc", "auc"),
                                                                    ("sensitivity", "sensitivity"),
                                                                    ("specificity", "specificity"))}
    return out


def fold_result(root, k, n_folds, budget, plans, chosen, run, ev, times, info, load_start, started) -> dict:
    cfg = plans["configurations"][chosen]
    b = cfg.get("budget") or {}
    summary = load_json(ev / "summary.json")
    dice = {name: m["dice"]["mean"] for name, m in summary["mean"].items()}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "dataset": short_name(root), "fold": k, "folds": n_folds, "budget": budget, **info,
        "configuration": chosen, "recommendation": plans.get("recommendation"),
        "plan": {"spacing": cfg["spacing"], "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
                 "features": cfg["architecture"]["arch_kwargs"]["features_per_stage"][0],
                 "precision": b.get("precision"), "seconds_per_step": b.get("seconds_per_step"),
                 "planned_steps": b.get("expected_steps")},
        "trained_steps": trained_steps(run / chosen / "fold_all"),
        # training's own record (issue 25): the steps the plan's timing allowed in this run's loop (fold 'all' has
        # no final validation, so more than the plan's figure for a fold), and the speed it really ran at
        "budget_record": load_json(run / chosen / "fold_all" / "budget.json")
        if (run / chosen / "fold_all" / "budget.json").is_file() else None,
        "stage_seconds": times, "dice": dice, "mean_dice": sum(dice.values()) / max(len(dice), 1),
        "domain": domain_figures(summary),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(), "started": started,
        "ended": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit}


# --- the table ---

def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    m = sum(values) / len(values)
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{m:.3f} ± {sd:.3f}"


def _references() -> dict:
    path = HERE / "references.json"
    return load_json(path) if path.is_file() else {}


def _headline(name: str, folds: list[dict], ref: dict | None) -> tuple[str, str]:
    """The published headline figure for a dataset and autoseg's gap to it on the same metric."""
    h = (ref or {}).get("headline") or {}
    if not h or h.get("value") is None:
        return h.get("label", "-"), "-"
    ours = h["ours"]
    if ours == "mean_dice":
        vals = [f["mean_dice"] for f in folds]
    elif ours.startswith("dice:"):
        vals = [f["dice"][ours[5:]] for f in folds if ours[5:] in f["dice"]]
    elif ours == "regions_mean":
        vals = [sum(f["domain"]["regions"].values()) / len(f["domain"]["regions"]) for f in folds
                if f.get("domain", {}).get("regions")]
    elif ours == "hc_mad_mm":
        vals = [f["domain"]["head_circumference"]["mae_mm"] for f in folds
                if "head_circumference" in f.get("domain", {})]
    else:  # vessel_f1
        vals = [f["domain"]["vessel"]["f1"] for f in folds if "vessel" in f.get("domain", {})]
    if not vals:
        return h["label"], "-"
    return h["label"], f"{sum(vals) / len(vals) - h['value']:+.3f}"


def _domain_text(folds: list[dict]) -> str:
    out = []
    hc = [f["domain"]["head_circumference"] for f in folds if "head_circumference" in f.get("domain", {})]
    if hc:
        out.append("HC abs. diff " + _mean_sd([h["mae_mm"] for h in hc]) + " mm")
    vs = [f["domain"]["vessel"] for f in folds if "vessel" in f.get("domain", {})]
    if vs:
        out.append("vessel F1 " + _mean_sd([v["f1"] for v in vs]))
        aucs = [v["auc"] for v in vs if v.get("auc") is not None]
        if aucs:
            out.append("AUC " + _mean_sd(aucs))
    rg = [f["domain"]["regions"] for f in folds if f.get("domain", {}).get("regions")]
    if rg:
        out += [f"{r} {_mean_sd([g[r] for g in rg])}" for r in rg[0]]
    return "; ".join(out) or "-"


def _planned_text(f: dict) -> str:
    """The plan's steps (for a fold with validation) and, where training recorded it, the steps the plan's timing
    allowed in this fold-'all' run and the trained speed against the planned one."""
    r = f.get("budget_record")
    if not r or not r.get("expected_steps_here"):
        return str(f["plan"]["planned_steps"])
    ratio = (r["trained_seconds_per_step"] or 0) / r["planned_seconds_per_step"] if r["planned_seconds_per_step"] \
        else 0
    return f"{f['plan']['planned_steps']} ({r['expected_steps_here']} here; step x{ratio:.2f})"


def write_table(results: Path) -> str:
    refs = _references()
    rows, fold_rows = [], []
    for dset_dir in sorted(p for p in results.iterdir() if p.is_dir()):
        folds = [load_json(f) for f in sorted(dset_dir.glob("fold*.json"))]
        if not folds:
            continue
        name = dset_dir.name
        classes = list(folds[0]["dice"])
        per_class = "; ".join(f"{c} {_mean_sd([f['dice'][c] for f in folds])}" for c in classes)
        configs = "/".join(sorted({f["configuration"] for f in folds}))
        label, gap = _headline(name, folds, refs.get(name.split("-")[0]))
        rows.append([name, f"{len(folds)}/{folds[0]['folds']}", folds[0]["budget"], configs,
                     _mean_sd([f["mean_dice"] for f in folds]), per_class, _domain_text(folds), label, gap])
        for f in folds:
            p = f["plan"]
            fold_rows.append([name, f["fold"], f["configuration"], [round(s, 3) for s in p["spacing"]],
                              p["patch_size"], p["batch_size"],
                              p["features"], p["precision"], _planned_text(f), f["trained_steps"],
                              round(f["stage_seconds"].get("train", 0)), round(f["mean_dice"], 3),
                              "/".join(f"{x:.1f}" for x in f["load_average_start"][:1] + f["load_average_end"][:1]),
                              f["started"][:16]])
    head = ["dataset", "folds", "budget", "config", "mean Dice (fold sd)", "per class", "domain metric",
            "published reference (full training)", "autoseg - reference"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    fhead = ["dataset", "fold", "config", "spacing", "patch", "batch", "features", "precision", "planned steps",
             "trained steps", "train s", "mean Dice", "load start/end", "started (UTC)"]
    md += ["", "| " + " | ".join(fhead) + " |", "|" + "---|" * len(fhead)]
    md += ["| " + " | ".join(str(c) for c in r) + " |" for r in fold_rows]
    text = "\n".join(md) + "\n"
    (results / "TABLE.md").write_text(text)
    print(format_table(head[:6], [r[:6] for r in rows]))
    return text


def add_regions(root: Path, k: int, out: Path, work: Path) -> None:
    """A kept fold of a dataset scored on regions, finished before its region score existed: score its kept
    predictions on the regions and add the figures to its JSON."""
    res = load_json(out)
    fold_dir = work / short_name(root) / f"fold{k}"
    if region_labels(short_name(root)) is None or res.get("domain", {}).get("regions") \
            or not (fold_dir / "pred").is_dir():
        return
    times: dict = {}
    res.setdefault("domain", {})["regions"] = evaluate_regions(short_name(root), fold_dir, fold_dir / "split" / "test",
                                                               fold_dir / "pred", times)
    save_json(res, out)
    print(f"{short_name(root)} fold {k}: regions added ({times.get('evaluate_regions')} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.matrix", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="datasets by (part of) name; default: all in --data")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=Path("/tmp/autoseg_matrix"), help="split links, runs, predictions")
    ap.add_argument("--results", type=Path, default=HERE.parent / "results" / "matrix",
                    help="one JSON per finished fold, and TABLE.md (kept: a rerun skips finished folds)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--fold", type=int, nargs="+", help="only these folds (default: all)")
    ap.add_argument("--budget", help=f"budget per fold for every dataset (default: ACDC {BUDGETS['ACDC']}, others "
                                     f"{DEFAULT_BUDGET})")
    ap.add_argument("-c", "--configuration", help="train this configuration instead of the plan's recommendation "
                                                  "(results go to RESULTS/<dataset>-<configuration>)")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the kept results")
    a = ap.parse_args(argv)
    a.results.mkdir(parents=True, exist_ok=True)
    if a.table:
        write_table(a.results)
        return 0
    if not a.data.is_dir():
        print(f"matrix: no datasets at {a.data} (the shared data lives beside the project root; set --data)")
        return 2
    failed = []
    for root in find_datasets(a.data, a.names):
        name = short_name(root) + (f"-{a.configuration}" if a.configuration else "")
        budget = a.budget or BUDGETS.get(short_name(root), DEFAULT_BUDGET)
        for k in a.fold if a.fold is not None else range(a.folds):
            out = a.results / name / f"fold{k}.json"
            if out.is_file():
                print(f"{name} fold {k}: kept ({out})")
                add_regions(root, k, out, a.work / (a.configuration or "auto"))
                continue
            print(f"{name} fold {k}/{a.folds}: budget {budget}, {datetime.datetime.now():%H:%M:%S}, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            try:
                res = run_fold(root, k, a.folds, budget, a.work / (a.configuration or "auto"), a.configuration)
            except RuntimeError as e:
                print(f"{name} fold {k}: {e}", flush=True)
                failed.append(f"{name} fold {k}")
                continue
            save_json(res, out)
            print(f"{name} fold {k}: {res['configuration']}, mean Dice {res['mean_dice']:.3f}, "
                  f"{res['trained_steps']} steps trained of ~{res['plan']['planned_steps']} planned", flush=True)
    write_table(a.results)
    if failed:
        print(f"failed: {', '.join(failed)} (rerun to retry; finished stages are kept)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
