"""The typed API behind the CLI: plan, preprocess, train, predict, evaluate, demo."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .core.errors import AutosegError
from .core.files import remove_stale_temps
from .core.jsonio import save_json
from .core.locks import folder_lock
from .core.progress import format_table
from .io.dataset import load_dataset
from .io.workspace import Workspace
from .planner.fingerprint import extract_fingerprint
from .planner.heuristics import get_preset
from .planner.planner import make_plans, plans_table
from .planner.plans import Plans
from .preprocessing.preprocessor import is_preprocessed, run_preprocessing
from .training.config import TrainConfig
from .training.splits import grouped_kfold, save_splits


def plan(dataset_dir: str | Path, out: str | Path, gpu_memory_gb: float | None = None, group_by: str | None = None,
         preprocess_after: bool = True, configurations: list[str] | None = None, num_workers: int = 2,
         n_folds: int = 5, budget: str | float | None = None, device: str = "auto",
         preset: str = "default") -> Plans:
    """Fingerprint the dataset, write plans.json and splits.json, and (by default) preprocess.

    ``preset`` picks nnU-Net's planner to follow: default (plain U-Net, 8 GB) or resenc-m / resenc-l / resenc-xl
    (residual encoder U-Net for 8 / 24 / 40 GB); ``gpu_memory_gb`` defaults to the preset's target.

    With ``budget`` (seconds, or text such as '20m') the configurations are re-chosen to train well within that
    time on ``device``, from timed training steps (see ``autoseg.planner.budget``)."""
    from .planner.budget import apply_budget, parse_budget

    budget_s = parse_budget(budget)
    get_preset(preset)  # an unknown preset fails before the fingerprint is taken
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
    plans = make_plans(ds, fp, gpu_memory_gb, preset)
    if budget_s is not None:
        from .core.device import resolve_device
        from .preprocessing.resolution import label_limit
        from .training.step_timing import step_timer

        dev = resolve_device(device)
        plans = _without_cascade(plans)  # the budget keeps 2d and 3d_fullres only
        # under a residual preset, residual candidates are timed
        plans = apply_budget(plans, budget_s, str(dev), len(ds.cases), n_folds, timer=step_timer(dev),
                             only=configurations, label_limit=label_limit(ds, plans.transpose_forward))
    plan_seconds = round(time.time() - t0, 2)
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


def _without_cascade(plans: Plans) -> Plans:
    confs = {k: dataclasses.replace(v, next_stage=None) for k, v in plans.configurations.items()
             if v.previous_stage is None}
    return dataclasses.replace(plans, configurations=confs)


def preprocess(run_dir: str | Path, configurations: list[str] | None = None, num_workers: int = 2) -> None:
    ws = Workspace.at(run_dir).require_plans()
    plans = Plans.load(ws.plans)
    ds = load_dataset(plans.dataset_dir)
    # 3d_lowres is preprocessed on request; 3d_cascade_fullres reads 3d_fullres's data
    configs = configurations or [c for c, v in plans.configurations.items()
                                 if c != "3d_lowres" and v.previous_stage is None]
    configs = list(dict.fromkeys(plans.configuration(c).inherits_from or c for c in configs))
    for c in configs:
        t0 = time.time()
        run_preprocessing(ds, plans, c, ws.preprocessed(c), num_workers)
        print(f"preprocess {c}: {len(ds.cases)} cases in {ws.preprocessed(c)} ({time.time() - t0:.1f}s)", flush=True)


def train(run_dir: str | Path, configuration: str | None, fold: str, tc: TrainConfig | None = None,
          resume: bool = False, budget: str | float | None = None, explicit: set[str] | None = None) -> dict:
    """Train one fold (0..4 or 'all') of ``configuration``, or with None of the one the budget plan recommends
    (``Plans.recommendation``). A budget given here, or planned with `plan --budget`, makes training follow
    the clock; an explicit ``epochs`` (named in ``explicit``, the settings the user chose) without a budget uses
    the epoch schedule instead of the planned budget; under a budget the optimiser is AdamW unless ``optimizer``
    is named in ``explicit`` (see ``_resolve_optimizer``). Plans, dataset and split are read once, here. After the
    last fold has validated, the configuration is cross-validated (see ``crossval``)."""
    from .planner.budget import parse_budget
    from .postprocessing.best import missing_folds
    from .training.distributed import launch_env
    from .training.fold import train_fold
    from .training.setup import FoldSetup
    from .training.trainers import apply_trainer

    start = time.time()
    tc, explicit = apply_trainer(tc or TrainConfig(), set(explicit or ()))  # the variant's settings count as chosen
    ws = Workspace.at(run_dir).require_plans()
    plans = Plans.load(ws.plans)
    configuration = configuration or _recommended(plans, ws)
    tc = _resolve_optimizer(_resolve_schedule(plans.configuration(configuration), configuration,
                                              tc, parse_budget(budget), explicit), explicit).validate()
    ds = load_dataset(plans.dataset_dir)
    setup = FoldSetup.load(ws, plans, ds, configuration, fold, tc.network)
    if setup.cfg.previous_stage:  # the cascade trains on the first stage's cross-validation predictions
        from .preprocessing.cascade import require_previous_stage
        from .training.splits import read_splits

        require_previous_stage(ws, plans, configuration, setup.train_cases + setup.val_cases, read_splits(ws.splits))
    env = launch_env()  # under torchrun, rank 0 alone preprocesses and cross-validates
    main = env is None or env.rank == 0
    data_config = setup.cfg.inherits_from or configuration
    if main and not is_preprocessed(ds.cases, plans, data_config, ws.preprocessed(data_config)):
        # a run planned with --no-preprocess, or 3d_lowres (preprocessed on request): its data is made here
        run_preprocessing(ds, plans, data_config, ws.preprocessed(data_config), 2)
    result = train_fold(setup, tc, resume, start_time=start)
    if main and setup.n_folds and not missing_folds(ws, configuration, setup.n_folds):
        print(f"all folds of {configuration} are validated: running `autoseg crossval {ws.root} -c "
              f"{configuration}`", flush=True)
        _crossval(ws, configuration, plans, ds, setup.n_folds)
    return result


def _recommended(plans: Plans, ws: Workspace) -> str:
    """The configuration `train` trains when none is named: the budget plan's recommendation, said with its reason."""
    rec = plans.recommendation
    if rec is None:
        raise AutosegError(f"{ws.plans} recommends no configuration (it was planned without --budget); name one "
                           f"with -c: planned are {', '.join(sorted(plans.configurations))}")
    print(f"training {rec.configuration}, the configuration the budget plan recommends: {'; '.join(rec.reasons)} "
          "(-c names another)", flush=True)
    return rec.configuration


def _resolve_schedule(cfg, configuration: str, tc: TrainConfig, budget_s: float | None,
                      explicit: set[str]) -> TrainConfig:
    """Set the budget and, from the planned schedule scaled to it, the epochs and iterations the user did not
    choose."""
    if budget_s is not None and "epochs" in explicit:
        raise AutosegError("give either --epochs or --budget, not both: under a budget the clock sets the schedule")
    planned = cfg.budget
    if budget_s is None and planned and "epochs" not in explicit:
        budget_s = float(planned["budget_seconds"])
    if budget_s is None:
        return tc
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
    return tc


def _resolve_optimizer(tc: TrainConfig, explicit: set[str]) -> TrainConfig:
    """Under a budget, AdamW unless the user chose the optimiser (in a short run it learns from the first steps,
    where SGD spends a quarter of 20 minutes before the pseudo-Dice leaves 0; docs/budget.md has the
    cross-validation). A learning rate left at SGD's default follows the optimiser's default."""
    from .training.config import BUDGET_OPTIMIZER, DEFAULT_LR

    if tc.budget_seconds and "optimizer" not in explicit:
        tc.optimizer = BUDGET_OPTIMIZER
    if "initial_lr" not in explicit and tc.initial_lr == DEFAULT_LR["sgd"]:
        tc.initial_lr = DEFAULT_LR.get(tc.optimizer, tc.initial_lr)
    return tc


def _crossval(ws: Workspace, configuration: str, plans: Plans, ds, n_folds: int) -> dict:
    from .postprocessing.decide import decide_postprocessing

    result = decide_postprocessing(ws, configuration, n_folds, plans, ds)
    print(f"cross-validation written: {ws.cv_summary(configuration)}, {ws.postprocessing(configuration)}, "
          f"{ws.best}", flush=True)
    return result


def crossval(run_dir: str | Path, configuration: str) -> dict:
    """Score every fold's validation predictions together, decide the postprocessing and choose the best
    configuration (``cv_summary.json``, ``postprocessing.json``, ``best.json``)."""
    from .postprocessing.best import fold_count, missing_folds

    ws = Workspace.at(run_dir).require_plans()
    plans = Plans.load(ws.plans)
    plans.configuration(configuration)
    n_folds = fold_count(ws)
    missing = missing_folds(ws, configuration, n_folds)
    if missing:
        raise AutosegError(f"{ws.config_dir(configuration)}: fold(s) {missing} have no validation/summary.json; "
                           f"train them first (autoseg train {ws.root} -c {configuration} -f K)")
    return _crossval(ws, configuration, plans, load_dataset(plans.dataset_dir), n_folds)


def find_best(run_dir: str | Path, configurations: list[str] | None = None) -> dict:
    """Rank every trained configuration and every pair ensemble by cross-validation Dice, decide the winner's
    postprocessing and write best.json (needs validation probabilities: train with
    --save-validation-probabilities)."""
    from .postprocessing.ranking import rank_configurations

    return rank_configurations(Workspace.at(run_dir), configurations)


def predict(run_dir: str | Path, inp: str | Path, out_dir: str | Path, *,
            configuration: str | list[str] | None = None, folds: list[str] | None = None, mirror: bool = True,
            step: float = 0.5, save_probabilities: bool = False, device: str = "auto", num_parts: int = 1,
            part_id: int = 0, skip_done: bool = False, postprocessing: bool = True) -> list[Path]:
    """Segment a file or folder with a run or MODEL.zip. ``num_parts``/``part_id`` predict one round-robin share of
    the sorted cases (parts may run anywhere into one output folder); ``skip_done`` (--continue) skips cases whose
    output is complete. The settings are keywords: thirteen in a row are too easy to shift by one."""
    from .cluster.shard import case_selector
    from .inference.predictor import predict_folder

    if folds == ["all"]:
        folds = None  # every trained fold
    select = case_selector(num_parts, part_id, out_dir, skip_done, save_probabilities)
    from .sharing.model_zip import extracted_model, is_model_zip

    if is_model_zip(run_dir):  # a model made by `autoseg export`: unpacked (checked) into a temporary folder
        with extracted_model(run_dir) as model_dir:
            return predict_folder(Workspace.at(model_dir), inp, out_dir, configuration, folds, mirror, step,
                            save_probabilities, device, select=select, part=(part_id, num_parts),
                            use_postprocessing=postprocessing)
    return predict_folder(Workspace.at(run_dir), inp, out_dir, configuration, folds, mirror, step, save_probabilities,
                    device, select=select, part=(part_id, num_parts), use_postprocessing=postprocessing)


def evaluate(pred_dir: str | Path, labels_dir: str | Path, dataset_json: str | Path | None = None,
             out: str | Path | None = None, cases_csv: str | Path | None = None, report: bool = False,
             images_dir: str | Path | None = None, hc_reference: str | None = None, hc_label: str | None = None,
             hc_inset_px: float = 0.0, vessel_label: str | None = None) -> dict:
    """Metrics (Dice, IoU, HD95, ASSD), clinical indices where the labels are cardiac, domain metrics where asked
    for (head circumference: ``hc_reference`` COLUMN, CSV:COLUMN or none, by default the case table's hc_mm column;
    vessels: ``vessel_label``), and optionally a report."""
    from .evaluation.evaluate import evaluate_folder, summary_table

    out_dir = Path(out or pred_dir)
    if not Path(pred_dir).is_dir():
        raise AutosegError(f"{pred_dir}: folder not found")
    with folder_lock(out_dir, "evaluate"):  # the summary and the report, as one writer
        summary = evaluate_folder(pred_dir, labels_dir, dataset_json, out, cases_csv, hc_reference, hc_label,
                                  hc_inset_px, vessel_label)
        print(summary_table(summary))
        print(f"summary written to {out_dir / 'summary.json'} and summary.csv", flush=True)
        if report:
            _write_report(summary, Path(pred_dir), Path(labels_dir), dataset_json, out_dir, images_dir)
    return summary


def _write_report(summary: dict, pred_dir: Path, labels_dir: Path, dataset_json, out_dir: Path,
                  images_dir) -> None:
    from .core.jsonio import load_json
    from .evaluation.report import write_report

    if images_dir is None:  # labelsTs -> imagesTs, labelsTr -> imagesTr
        cand = labels_dir.parent / labels_dir.name.replace("labels", "images", 1)
        images_dir = cand if cand.is_dir() and cand != labels_dir else None
    dj_path = Path(dataset_json) if dataset_json else labels_dir.parent / "dataset.json"
    dj = load_json(dj_path)
    if not isinstance(dj, dict) or "file_ending" not in dj:
        raise AutosegError(f"{dj_path}: no \"file_ending\" (e.g. \".nii.gz\"); add it for the report")
    # a report killed earlier left its temporary files in report/ (the caller holds out_dir's lock, which cleans
    # out_dir itself but not this subfolder)
    remove_stale_temps(out_dir / "report")
    page = write_report(summary, pred_dir, labels_dir, out_dir / "report", Path(images_dir) if images_dir else None,
                        dj["file_ending"])
    print(f"report written to {page}", flush=True)


def demo(out: str | Path = "autoseg_demo", epochs: int = 15, iters_per_epoch: int = 30, batch_size: int = 6,
         n_train_patients: int = 10, n_test_patients: int = 4, seed: int = 0, size: int = 80,
         features_per_stage: list[int] | None = None, budget: str | float | None = None,
         device: str = "auto") -> dict:
    """Phantom -> plan -> train (CPU-sized schedule) -> predict held-out patients -> evaluate.

    The schedule is sized for a 2-core CPU (about 450 iterations of a batch of 6 2D patches); the plan itself is
    nnU-Net's, unchanged. A smaller phantom (``size`` voxels in-plane) and network (``features_per_stage``, one
    width per stage of the planned 2d U-Net, instead of the plan's) make a demo of seconds, for the test suite.
    With ``budget`` the demo does what a user with that much time does: plans 2d and 3d_fullres for it on
    ``device`` and trains the configuration the plan recommends, by the clock (the schedule arguments are unused)."""
    from .datasets.phantom import make_phantom_dataset

    t0 = time.time()
    out = Path(out)
    data = make_phantom_dataset(out / "data", n_train_patients, n_test_patients, seed, size)
    run = out / "run"
    if budget is not None:
        config = plan(data, run, budget=budget, device=device).recommendation.configuration
        train(run, None, "0", TrainConfig(seed=seed))
    else:
        config = "2d"
        plan(data, run, configurations=["2d"])
        if features_per_stage is not None:
            _set_features(Workspace.at(run), "2d", list(features_per_stage))
        tc = TrainConfig(epochs=epochs, iters_per_epoch=iters_per_epoch, val_iters=5, save_every=max(epochs, 1),
                         seed=seed, batch_size=batch_size)
        train(run, "2d", "0", tc)
    predict(run, data / "imagesTs", out / "predictions", configuration=config, folds=["0"])
    summary = evaluate(out / "predictions", data / "labelsTs", data / "dataset.json")
    wall = time.time() - t0
    rows = [[n, m["dice"]["mean"], m["iou"]["mean"]] for n, m in summary["mean"].items()]
    print(f"\ndemo finished in {wall:.0f}s: held-out phantom patients ({summary['num_cases']} cases)")
    print(format_table(["structure", "Dice", "IoU"], rows), flush=True)
    summary["demo_seconds"] = wall
    save_json({"seconds": wall, "mean": summary["mean"]}, out / "demo_result.json")
    return summary


def _set_features(ws: Workspace, configuration: str, features: list[int]) -> None:
    """Replace the planned network widths of one configuration in plans.json (as a person editing it would)."""
    from .core.jsonio import load_json

    plans = load_json(ws.plans)
    kwargs = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    if len(features) != len(kwargs["features_per_stage"]) or not all(isinstance(f, int) and f >= 1
                                                                     for f in features):
        raise AutosegError(f"features_per_stage {features}: the planned {configuration} network has "
                           f"{len(kwargs['features_per_stage'])} stages; give one positive width per stage")
    kwargs["features_per_stage"] = features
    save_json(plans, ws.plans)
    Plans.load(ws.plans)  # still valid plans


def verify(dataset_dir: str | Path) -> None:
    from .io.dataset import verify_dataset

    ds = verify_dataset(dataset_dir)
    print(f"{ds.root}: {len(ds.cases)} cases verified (files, label values, shapes, spacings, NaN/inf)")


def plugins() -> dict[str, dict[str, str]]:
    """Every registered part by kind, name -> where it comes from (autoseg, or a plugin package), printed as a
    table; plugin packages found through the 'autoseg.plugins' entry point are loaded first."""
    from .core.registry import load_plugins
    from .networks import NETWORKS
    from .training.objective.losses import LOSSES
    from .training.sampling.augmentation import AUGMENTATIONS
    from .training.trainers import TRAINERS

    found = load_plugins()
    kinds = {"network": NETWORKS, "loss": LOSSES, "trainer": TRAINERS, "augmentation": AUGMENTATIONS}
    out = {kind: {n: reg.source(n) for n in reg.names()} for kind, reg in kinds.items()}
    rows = [[kind, n, src, TRAINERS.get(n).description if kind == "trainer" else ""]
            for kind, names in out.items() for n, src in names.items()]
    print(format_table(["kind", "name", "from", "what"], rows))
    print(f"plugin packages: {', '.join(f'{k} ({v})' for k, v in found.items()) or 'none installed'}", flush=True)
    return out


# --- sharing: model zips, nnU-Net models, dataset converters (issue 14) ---

def export(run_dir: str | Path, out_zip: str | Path, configurations: list[str] | None = None,
           folds: list[str] | None = None, onnx: bool = False) -> Path:
    """Write MODEL.zip with what prediction needs (no training data); `predict MODEL.zip` reads it."""
    from .sharing.model_zip import export_model, sha256_of

    path = export_model(run_dir, out_zip, configurations, folds, onnx)
    print(f"model written to {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_of(path)[:16]}...)",
          flush=True)
    return path


def import_nnunet(model_dir: str | Path, out: str | Path, folds: list[str] | None = None,
                  checkpoint: str = "checkpoint_final.pth") -> Path:
    """Turn an nnU-Net v2 trained model folder into an autoseg run (plans translated, weights renamed)."""
    from .sharing.nnunet_import import import_nnunet_model

    return import_nnunet_model(model_dir, out, folds, checkpoint)


def convert(kind: str, raw_dir: str | Path, out: str | Path) -> Path:
    """Convert a public dataset's own layout (acdc, camus, msd) into the nnU-Net v2 raw layout."""
    from .datasets.converters import convert_dataset

    return convert_dataset(kind, raw_dir, out)


__all__ = ["plan", "preprocess", "train", "crossval", "find_best", "predict", "evaluate", "demo", "verify", "export",
           "import_nnunet", "convert", "AutosegError"]
