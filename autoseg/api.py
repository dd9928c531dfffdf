"""The typed API behind the CLI: plan, preprocess, train, predict, evaluate, demo."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .io.dataset import load_dataset
from .planner.fingerprint import extract_fingerprint
from .planner.planner import make_plans, plans_table
from .planner.plans import Plans
from .preprocessing.preprocessor import run_preprocessing
from .training.config import TrainConfig
from .training.splits import grouped_kfold, save_splits
from .utils import AutosegError, folder_lock, format_table, save_json
from .workspace import Workspace


def plan(dataset_dir: str | Path, out: str | Path, gpu_memory_gb: float = 8.0, group_by: str | None = None,
         preprocess_after: bool = True, configurations: list[str] | None = None, num_workers: int = 2,
         n_folds: int = 5, budget: str | float | None = None, device: str = "auto") -> Plans:
    """Fingerprint the dataset, write plans.json and splits.json, and (by default) preprocess.

    With ``budget`` (seconds, or text such as '20m') the configurations are re-chosen to train well within that
    time on ``device``, from timed training steps (see ``autoseg.planner.budget``)."""
    from .planner.budget import apply_budget, parse_budget

    budget_s = parse_budget(budget)
    t0 = time.time()
    ws = Workspace.at(out)
    data_root = Path(dataset_dir).resolve()
    inside = ws.root.relative_to(data_root).parts if ws.root.is_relative_to(data_root) else None
    if inside is not None and (not inside or inside[0].startswith(("images", "labels"))):
        raise AutosegError(f"--out {out}: the run folder must not be the dataset folder or one of its image/label "
                           "folders; choose a separate folder")
    ws.root.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(dataset_dir, group_by)
    fp = extract_fingerprint(ds, num_workers)
    save_json(fp, ws.fingerprint)
    plans = make_plans(ds, fp, gpu_memory_gb)
    if budget_s is not None:
        from .inference.predictor import resolve_device

        plans = apply_budget(plans, budget_s, resolve_device(device), len(ds.cases), n_folds, only=configurations)
    plan_seconds = round(time.time() - t0, 2)
    plans = dataclasses.replace(plans, planning_seconds=plan_seconds)
    plans.save(ws.plans)
    groups = sorted(set(ds.groups.values()))
    if len(groups) >= n_folds:
        save_splits(grouped_kfold(ds.cases, ds.groups, n_folds), ws.splits)
    else:
        print(f"note: {len(groups)} patient group(s) are too few for {n_folds} folds; train with -f all")
    print(f"dataset {ds.name}: {len(ds.cases)} cases, {len(groups)} patient groups, {ds.num_channels} channel(s), "
          f"labels {ds.labels}")
    print(plans_table(plans), flush=True)
    print(f"plans written to {ws.plans} ({plan_seconds:.1f}s)", flush=True)
    if preprocess_after:
        preprocess(out, configurations, num_workers)
    return plans


def preprocess(run_dir: str | Path, configurations: list[str] | None = None, num_workers: int = 2) -> None:
    ws = Workspace.at(run_dir).require_plans()
    plans = Plans.load(ws.plans)
    ds = load_dataset(plans.dataset_dir)
    configs = configurations or [c for c in plans.configurations if c != "3d_lowres"]
    for c in configs:
        t0 = time.time()
        run_preprocessing(ds, plans, c, ws.preprocessed(c), num_workers)
        print(f"preprocess {c}: {len(ds.cases)} cases in {ws.preprocessed(c)} ({time.time() - t0:.1f}s)", flush=True)


def train(run_dir: str | Path, configuration: str, fold: str, tc: TrainConfig | None = None,
          resume: bool = False, budget: str | float | None = None, explicit: set[str] | None = None) -> dict:
    """Train one fold. A budget given here, or planned with `plan --budget`, makes training follow the clock; an
    explicit ``epochs`` (named in ``explicit``, the settings the user chose) without a budget uses the epoch
    schedule instead of the planned budget."""
    from .planner.budget import parse_budget
    from .training.loop import train as _train

    start = time.time()
    ws = Workspace.at(run_dir).require_plans()
    tc = tc or TrainConfig()
    explicit = set(explicit or ())
    cfg = Plans.load(ws.plans).configuration(configuration)
    budget_s = parse_budget(budget)
    if budget_s is not None and "epochs" in explicit:
        raise AutosegError("give either --epochs or --budget, not both: under a budget the clock sets the schedule")
    planned = cfg.budget
    if budget_s is None and planned and "epochs" not in explicit:
        budget_s = float(planned["budget_seconds"])
    if budget_s is not None:
        tc.budget_seconds = budget_s
        sched = planned["schedule"] if planned else None
        if sched:
            scale = budget_s / float(planned["budget_seconds"])
            for k, v in (("epochs", max(1, round(sched["epochs"] * scale))), ("iters_per_epoch",
                         sched["iters_per_epoch"]), ("val_iters", sched["val_iters"])):
                if k not in explicit:
                    setattr(tc, k, v)
        else:
            print(f"note: {configuration} was planned without a budget (batch {cfg.batch_size}, patch "
                  f"{cfg.patch_size}); `autoseg plan --budget` would choose a configuration that fits it", flush=True)
        if planned and planned.get("device") and tc.device not in ("auto", planned["device"]):
            print(f"note: the budget was timed on {planned['device']}; training on {tc.device}", flush=True)
    preprocess(run_dir, [configuration])  # no-op when every case is done under the current plans
    return _train(ws, configuration, fold, tc, resume, start_time=start)


def predict(run_dir: str | Path, inp: str | Path, out_dir: str | Path, configuration: str | None = None,
            folds: list[str] | None = None, mirror: bool = True, step: float = 0.5,
            save_probabilities: bool = False, device: str = "auto") -> list[Path]:
    from .inference.predictor import predict as _predict

    if folds == ["all"]:
        folds = None  # every trained fold
    return _predict(Workspace.at(run_dir), inp, out_dir, configuration, folds, mirror, step, save_probabilities,
                    device)


def evaluate(pred_dir: str | Path, labels_dir: str | Path, dataset_json: str | Path | None = None,
             out: str | Path | None = None, cases_csv: str | Path | None = None, report: bool = False,
             images_dir: str | Path | None = None) -> dict:
    """Metrics (Dice, IoU, HD95, ASSD), clinical indices where the labels are cardiac, and optionally a report."""
    from .evaluation.evaluate import evaluate_folder, summary_table

    out_dir = Path(out or pred_dir)
    if not Path(pred_dir).is_dir():
        raise AutosegError(f"{pred_dir}: folder not found")
    with folder_lock(out_dir, "evaluate"):  # the summary and the report, as one writer
        summary = evaluate_folder(pred_dir, labels_dir, dataset_json, out, cases_csv)
        print(summary_table(summary))
        print(f"summary written to {out_dir / 'summary.json'} and summary.csv", flush=True)
        if report:
            _write_report(summary, Path(pred_dir), Path(labels_dir), dataset_json, out_dir, images_dir)
    return summary


def _write_report(summary: dict, pred_dir: Path, labels_dir: Path, dataset_json, out_dir: Path,
                  images_dir) -> None:
    from .evaluation.report import write_report
    from .utils import load_json

    if images_dir is None:  # labelsTs -> imagesTs, labelsTr -> imagesTr
        cand = labels_dir.parent / labels_dir.name.replace("labels", "images", 1)
        images_dir = cand if cand.is_dir() and cand != labels_dir else None
    dj = load_json(dataset_json) if dataset_json else load_json(labels_dir.parent / "dataset.json")
    page = write_report(summary, pred_dir, labels_dir, out_dir / "report", Path(images_dir) if images_dir else None,
                        dj["file_ending"])
    print(f"report written to {page}", flush=True)


def demo(out: str | Path = "autoseg_demo", epochs: int = 15, iters_per_epoch: int = 30, batch_size: int = 6,
         n_train_patients: int = 10, n_test_patients: int = 4, seed: int = 0) -> dict:
    """Phantom -> plan -> train (CPU-sized schedule) -> predict held-out patients -> evaluate.

    The schedule is sized for a 2-core CPU (about 450 iterations of a batch of 6 2D patches); the plan itself is
    nnU-Net's, unchanged."""
    from .datasets.phantom import make_phantom_dataset

    t0 = time.time()
    out = Path(out)
    data = make_phantom_dataset(out / "data", n_train_patients, n_test_patients, seed)
    run = out / "run"
    plan(data, run, configurations=["2d"])
    tc = TrainConfig(epochs=epochs, iters_per_epoch=iters_per_epoch, val_iters=5, save_every=max(epochs, 1),
                     seed=seed, batch_size=batch_size)
    train(run, "2d", "0", tc)
    predict(run, data / "imagesTs", out / "predictions", "2d", ["0"])
    summary = evaluate(out / "predictions", data / "labelsTs", data / "dataset.json")
    wall = time.time() - t0
    rows = [[n, m["dice"]["mean"], m["iou"]["mean"]] for n, m in summary["mean"].items()]
    print(f"\ndemo finished in {wall:.0f}s: held-out phantom patients ({summary['num_cases']} cases)")
    print(format_table(["structure", "Dice", "IoU"], rows), flush=True)
    summary["demo_seconds"] = wall
    save_json({"seconds": wall, "mean": summary["mean"]}, out / "demo_result.json")
    return summary


def verify(dataset_dir: str | Path) -> None:
    from .io.dataset import verify_dataset

    ds = verify_dataset(dataset_dir)
    print(f"{ds.root}: {len(ds.cases)} cases verified (files, label values, shapes, spacings, NaN/inf)")


__all__ = ["plan", "preprocess", "train", "predict", "evaluate", "demo", "verify", "AutosegError"]
