"""The table of benchmarks/gpu_head_to_head.sh: epochs, seconds per epoch, iterations and test Dice of each tool.

    python benchmarks/head_to_head_summary.py WORK RESULTS SECONDS_EACH DEVICE

Reads WORK/nnunet_train.log (the NNUNET_TRAIN line of benchmarks/nnunet_train.py), autoseg's
WORK/run/2d/fold_all/log.jsonl, both evaluations (WORK/eval_<tool>/summary.json) and RESULTS/stages.tsv; writes
RESULTS/head_to_head.json and .md and prints the table. Standard library only.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def nnunet_row(work: Path) -> dict:
    line = re.findall(r"NNUNET_TRAIN .*", (work / "nnunet_train.log").read_text())[-1]
    kv = dict(x.split("=", 1) for x in line.split()[1:])
    epochs = [float(x) for x in kv["epoch_seconds"].split(",") if x]
    return {"epochs": int(kv["epochs"]), "iterations": int(kv["iterations"]),
            "train_seconds": float(kv["train_seconds"]), "iterations_per_epoch": int(kv["iters"]),
            "epoch_seconds": epochs, "batch_size": int(kv["batch"]) if "batch" in kv else None}


def autoseg_row(work: Path) -> dict:
    log = [json.loads(x) for x in (work / "run" / "2d" / "fold_all" / "log.jsonl").read_text().splitlines() if x]
    return {"epochs": len(log), "iterations": sum(r["iterations"] for r in log),
            "train_seconds": round(sum(r["epoch_seconds"] for r in log), 1),
            "iterations_per_epoch": max(r["iterations"] for r in log),
            "epoch_seconds": [r["epoch_seconds"] for r in log]}


def main() -> None:
    work, res, seconds, device = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    stages = dict(line.split("\t") for line in (res / "stages.tsv").read_text().splitlines()[1:])
    plans = json.loads((work / "run" / "plans.json").read_text())["configurations"]["2d"]
    nn_plans = json.loads(next((work / "nnunet" / "pre").glob("*/nnUNetPlans.json")).read_text())
    nn_plans = nn_plans["configurations"]["2d"]
    rows = {"nnU-Net 2.8.1 (own plan, own trainer)": nnunet_row(work), "autoseg (own plan, budget)": autoseg_row(work)}
    nn_row = next(iter(rows.values()))
    nn_row["plan"] = {k: nn_plans[k] for k in ("spacing", "patch_size", "batch_size")}
    nn_row["plan"]["batch_size"] = nn_row.pop("batch_size") or nn_plans["batch_size"]  # NNUNET_BATCH overrides
    rows["autoseg (own plan, budget)"]["plan"] = {k: plans[k] for k in ("spacing", "patch_size", "batch_size")}
    for r, tool in zip(rows.values(), ("nnunet", "autoseg")):
        s = json.loads((work / f"eval_{tool}" / "summary.json").read_text())
        r["dice"] = {k: round(v["dice"]["mean"], 4) for k, v in s["mean"].items()}
        r["mean_dice"] = round(statistics.mean(r["dice"].values()), 4)
        warm = r["epoch_seconds"][1:] or r["epoch_seconds"]
        r["first_epoch_seconds"] = round(r["epoch_seconds"][0], 1)
        r["warm_epoch_seconds"] = round(statistics.median(warm), 2)
        r["train_stage_seconds"] = float(stages.get(f"{tool}_train", "nan"))
    classes = list(next(iter(rows.values()))["dice"])
    head = ["", "plan (spacing, patch x batch)", "epochs", "iterations/epoch", "first epoch s", "warm epoch s",
            "iterations", "train stage s"] + [f"Dice {c}" for c in classes] + ["mean"]
    md = [f"{seconds:.0f} s of training each on {device}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        p = r["plan"]
        md.append("| " + " | ".join(str(x) for x in [
            name, f"{[round(v, 3) for v in p['spacing']]}, {p['patch_size']} x {p['batch_size']}", r["epochs"],
            r["iterations_per_epoch"], r["first_epoch_seconds"], r["warm_epoch_seconds"], r["iterations"],
            r["train_stage_seconds"]] + [f"{r['dice'][c]:.3f}" for c in classes] + [f"{r['mean_dice']:.3f}"]) + " |")
    md += ["", "stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items())]
    (res / "head_to_head.md").write_text("\n".join(md) + "\n")
    (res / "head_to_head.json").write_text(json.dumps({"seconds_each": seconds, "device": device, "stages": stages,
                                                      "tools": rows}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
