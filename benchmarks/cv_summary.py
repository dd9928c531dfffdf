"""Table of a budget cross-validation: per fold the configuration the plan chose, the steps trained and the test Dice
per structure; then the mean and spread over the folds (and over every test volume).

    python benchmarks/cv_summary.py /tmp/acdc_cv20/fold*
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def fold_row(folder: Path) -> dict | None:
    summary = folder / "eval" / "summary.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    plans = json.loads((folder / "run" / "plans.json").read_text())
    cfg = plans["configurations"]["2d"]
    steps = None
    log = folder / "run" / "2d" / "fold_all" / "log.jsonl"
    if log.is_file():
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        steps = sum(int(x.get("iterations") or 0) for x in lines)
    dice = {k: v["dice"]["mean"] for k, v in s["mean"].items()}
    return {"fold": folder.name, "spacing": round(cfg["spacing"][-1], 3),
            "patch": "x".join(map(str, cfg["patch_size"])),
            "batch": cfg["batch_size"], "features": cfg["architecture"]["arch_kwargs"]["features_per_stage"][0],
            "steps": steps, "planned": cfg["budget"]["expected_steps"], **dice, "mean": s["foreground_mean_dice"],
            "cases": [c for c in s["per_case"]]}


def main(folders: list[str]) -> None:
    rows = [r for r in (fold_row(Path(f)) for f in folders) if r]
    if not rows:
        sys.exit("no scored fold (eval/summary.json) in " + " ".join(folders))
    labels = [k for k in rows[0] if k not in {"fold", "spacing", "patch", "batch", "features", "steps", "planned",
                                               "mean", "cases"}]
    head = ["fold", "spacing", "patch", "batch", "features", "planned", "steps", *labels, "mean"]
    print("  ".join(f"{h:>9}" for h in head))
    for r in rows:
        print("  ".join(f"{r[h]:>9.3f}" if isinstance(r[h], float) else f"{str(r[h]):>9}" for h in head))
    means = [r["mean"] for r in rows]
    spread = statistics.stdev(means) if len(means) > 1 else 0.0
    per_label = {k: statistics.mean(r[k] for r in rows) for k in labels}
    print(f"cross-validated mean Dice over {len(rows)} folds: {statistics.mean(means):.3f} (fold sd {spread:.3f}, "
          f"range {min(means):.3f}-{max(means):.3f}); " + ", ".join(f"{k} {v:.3f}" for k, v in per_label.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
