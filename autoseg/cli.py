"""Command-line interface: argument parsing only; the work is done by autoseg.api."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .core.errors import AutosegError
from .core.process import raise_on_sigterm
from .core.version import __version__
from .training.config import TrainConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoseg", description="Self-configuring medical image segmentation.")
    p.add_argument("--version", action="version", version=f"autoseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("plan", help="fingerprint a dataset, write plans.json and splits.json, preprocess")
    s.add_argument("dataset", help="dataset folder in the nnU-Net v2 raw layout")
    s.add_argument("--out", required=True, help="run folder to create")
    s.add_argument("--gpu-memory-gb", type=float, default=None,
                   help="GPU memory target for patch/batch (default: the preset's, 8 GB for default and resenc-m)")
    s.add_argument("--preset", default="default", choices=["default", "resenc-m", "resenc-l", "resenc-xl"],
                   help="nnU-Net planner to follow: plain U-Net (default) or residual encoder U-Net for 8/24/40 GB")
    s.add_argument("--group-by", help="regex whose first group (or match) is the patient id of a case name")
    s.add_argument("--no-preprocess", action="store_true", help="only plan")
    s.add_argument("-c", "--configurations", nargs="+",
                   help="configurations to preprocess (default: all but 3d_lowres); with --budget, also the only "
                        "ones planned")
    s.add_argument("-j", "--num-workers", type=int, default=2)
    s.add_argument("--budget", help="training time per fold, e.g. 20m, 1.5h, 900s: choose spacing, network, patch, "
                                    "batch and schedule from steps timed on --device (default: nnU-Net's full "
                                    "schedule and GPU-memory rules)")
    s.add_argument("--device", default="auto", help="device the budget is timed on: auto, cpu or cuda")

    s = sub.add_parser("preprocess", help="preprocess training cases for configurations of a run")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configurations", nargs="+")
    s.add_argument("-j", "--num-workers", type=int, default=2)

    _add_train(sub)
    s = sub.add_parser("crossval", help="score all folds' validation together, decide postprocessing, pick the best "
                                        "configuration (runs by itself after the last fold's `train`)")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configuration", required=True)

    s = sub.add_parser("find-best", help="rank trained configurations and their pair ensembles by cross-validation "
                                         "Dice; the winner goes to best.json (`predict` without -c runs it)")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configurations", nargs="+", help="default: every trained configuration")

    s = sub.add_parser("predict", help="segment a file or a folder")
    s.add_argument("run_dir", help="run folder, or MODEL.zip made by `autoseg export`")
    s.add_argument("-i", "--input", required=True)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("-c", "--configuration", nargs="+", help="one configuration, or several for an ensemble (the "
                                                          "mean of their probabilities); default: best.json's")
    s.add_argument("-f", "--folds", nargs="+", help="fold numbers, or all (default: every trained fold)")
    s.add_argument("--no-tta", action="store_true", help="no test-time mirroring")
    s.add_argument("--no-postprocessing", action="store_true",
                   help="no largest-component step (default: what cross-validation decided or, for fold 'all', the "
                        "labels that are one piece in the training references)")
    s.add_argument("--step", type=float, default=0.5, help="tile step as a fraction of the patch (default 0.5)")
    s.add_argument("--save-probabilities", action="store_true")
    s.add_argument("--device", default="auto")
    s.add_argument("--num-parts", type=int, default=1,
                   help="split the cases into N parts (round-robin over sorted case ids) and predict one of them")
    s.add_argument("--part-id", type=int, default=0, help="which part to predict, 0..N-1 (default 0)")
    s.add_argument("--continue", action="store_true", dest="skip_done",
                   help="skip cases whose output file (and .npz with --save-probabilities) already exists")

    s = sub.add_parser("evaluate", help="Dice, IoU, HD95, ASSD, clinical indices and domain metrics (head "
                                       "circumference, vessels) against reference labels")
    s.add_argument("pred_dir")
    s.add_argument("labels_dir")
    s.add_argument("--dataset-json", help="dataset.json naming the labels (default: beside LABELS_DIR)")
    s.add_argument("--cases", help="CSV with columns case, patient, phase (ED/ES) [, view] (default: cases.csv "
                                   "beside dataset.json)")
    s.add_argument("--out", help="folder for summary.json/csv and the report (default: PRED_DIR)")
    s.add_argument("--report", action="store_true", help="write report/report.html with plots and overlays")
    s.add_argument("--images", help="images folder for the overlays (default: imagesXx beside labelsXx)")
    s.add_argument("--hc-reference", metavar="[CSV:]COLUMN",
                   help="head circumference (HC18): reference HC in mm from COLUMN of the case table, or of CSV; "
                        "'none' for no HC (default: the case table's hc_mm column, when it has one)")
    s.add_argument("--hc-label", metavar="LABEL", help="label (name or value) that is the head (default: all "
                                                       "foreground labels together)")
    s.add_argument("--hc-inset-px", type=float, default=0.0, metavar="PX",
                   help="measure HC this many pixels inside the segmented edge, for references drawn as outlines "
                        "whose filled masks keep the line's width (HC18's filled labels: 1.4; default 0)")
    s.add_argument("--vessel-label", metavar="LABEL",
                   help="thin-structure metrics for this label (name or value): sensitivity, specificity, accuracy, "
                        "Dice and, from <case>.npz saved by `predict --save-probabilities`, ROC AUC")

    s = sub.add_parser("demo", help="phantom -> plan -> train -> predict -> evaluate, CPU-sized")
    s.add_argument("--out", default="autoseg_demo")
    s.add_argument("--epochs", type=int, default=15)
    s.add_argument("--iters-per-epoch", type=int, default=30)
    s.add_argument("--batch-size", type=int, default=6)
    s.add_argument("--budget", help="plan 2d and 3d_fullres for this much training time (e.g. 3m) and train the "
                                    "configuration the plan recommends, by the clock (the schedule flags are unused)")
    s.add_argument("--device", default="auto", help="with --budget: the device it is timed and trained on")

    s = sub.add_parser("submit", help="fan folds x configurations (or prediction parts) out to SLURM or a local "
                                      "pool; track, report and resubmit failed jobs (state in RUN_DIR/jobs/)")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configurations", nargs="+", help="configurations to train")
    s.add_argument("-f", "--folds", nargs="+", help="folds (default: every fold of the run's splits.json, "
                   "0-4 as planned)")
    s.add_argument("--scheduler", choices=["slurm", "local"], help="sbatch jobs, or a process pool on this machine")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--gpus-per-job", type=int, help="GPUs per job (SLURM --gres=gpu:N; local: CUDA_VISIBLE_DEVICES)")
    s.add_argument("--cpus-per-job", type=int, help="SLURM --cpus-per-task")
    s.add_argument("--time", help="SLURM time limit per job, HH:MM:SS")
    s.add_argument("--max-parallel", type=int, help="at most N fold/part jobs at once (local default: one per GPU, "
                                                    "or 1 on a CPU)")
    s.add_argument("--sbatch-arg", action="append", default=[], help="extra sbatch option, e.g. --sbatch-arg=--qos=x")
    s.add_argument("--train-args", default="", help="extra `autoseg train` options for every fold job, as one "
                                                          "string: --train-args='--epochs 50'")
    s.add_argument("--after-folds", help="command run once a configuration's folds are trained, with {autoseg}, "
                                         "{run}, {config} (default: `{autoseg} crossval {run} -c {config}` where "
                                         "that command exists)")
    s.add_argument("--predict", action="store_true", help="fan out `predict` parts instead of training")
    s.add_argument("-i", "--input", help="--predict: image folder")
    s.add_argument("-o", "--output", help="--predict: output folder shared by the parts")
    s.add_argument("--num-parts", type=int, default=2, help="--predict: number of parts (default 2)")
    s.add_argument("--predict-args", default="", help="extra `autoseg predict` options for every part, as one "
                                                            "string: --predict-args='-c 2d --no-tta'")
    s.add_argument("--dry-run", action="store_true", help="print the jobs and sbatch commands; submit nothing")
    s.add_argument("--wait", action="store_true", help="SLURM: wait until every job has ended")
    s.add_argument("--status", action="store_true", help="show the state of the submitted jobs")
    s.add_argument("--resubmit-failed", action="store_true", help="submit again only the failed/cancelled jobs")

    s = sub.add_parser("verify", help="check every case of a dataset without planning")
    s.add_argument("dataset")
    sub.add_parser("plugins", help="list the registered networks, losses, trainer variants and augmentation "
                                   "pipelines, and the plugin packages that added some (entry point "
                                   "'autoseg.plugins')")
    _add_sharing_commands(sub)
    return p


def _add_sharing_commands(sub) -> None:
    """export, import-nnunet, convert (issue 14)."""
    s = sub.add_parser("export", help="write MODEL.zip with what prediction needs (no training data)")
    s.add_argument("run_dir")
    s.add_argument("-o", "--output", required=True, help="MODEL.zip to write")
    s.add_argument("-c", "--configurations", nargs="+", help="default: best.json's, else every trained one")
    s.add_argument("-f", "--folds", nargs="+", help="fold numbers, or all (default: every trained fold)")
    s.add_argument("--onnx", action="store_true", help="also each fold's network as network.onnx (needs the onnx "
                                                       "package; Predictor.from_run(..., backend='onnxruntime'))")

    s = sub.add_parser("import-nnunet", help="make an autoseg run from an nnU-Net v2 trained model folder")
    s.add_argument("model_dir", help="nnU-Net results folder with plans.json, dataset.json, fold_*/checkpoint_*.pth")
    s.add_argument("--out", required=True, help="run folder to create")
    s.add_argument("-f", "--folds", nargs="+", help="fold names as nnU-Net's: 0 1 ... or all for fold_all "
                                                    "(default: every fold with a checkpoint)")
    s.add_argument("--checkpoint", default="checkpoint_final.pth", help="file name in each fold folder")

    s = sub.add_parser("convert", help="convert a public dataset layout into the nnU-Net v2 raw layout")
    s.add_argument("kind", choices=["acdc", "camus", "msd"])
    s.add_argument("raw_dir", help="the dataset as downloaded (never modified)")
    s.add_argument("--out", required=True, help="DatasetNNN_Name folder to create")


def _run_sharing_command(args) -> bool:
    from . import api

    if args.command == "export":
        api.export(args.run_dir, args.output, args.configurations, args.folds, args.onnx)
    elif args.command == "import-nnunet":
        api.import_nnunet(args.model_dir, args.out, args.folds, args.checkpoint)
    elif args.command == "convert":
        api.convert(args.kind, args.raw_dir, args.out)
    else:
        return False
    return True


def _add_train(sub) -> None:
    s = sub.add_parser("train", help="train one fold (0-4) or 'all' of a configuration")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configuration", help="configuration to train (default: the one a `plan --budget` "
                                                 "recommends, with its reason in plans.json)")
    s.add_argument("-f", "--fold", required=True, help="0..4 or all")
    for f in fields(TrainConfig):  # every hyper-parameter, from the dataclass
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if meta.get("negate"):
            s.add_argument(flag, dest=f.name, action="store_false", default=None, help=meta["help"])
        elif str(f.type) == "bool":
            s.add_argument(flag, dest=f.name, action="store_true", default=None, help=meta["help"])
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type).split(" |")[0]]
            default = "" if f.default is None else f" (default {f.default:.4g})" if isinstance(f.default, float) \
                else f" (default {f.default})"
            s.add_argument(flag, dest=f.name, type=typ, default=None, help=meta["help"] + default)
    s.add_argument("--resume", action="store_true", help="continue from checkpoint_latest.pt (or finish an "
                                                         "interrupted final validation)")
    s.add_argument("--budget", help="wall-clock budget for this train command (e.g. 20m): the learning rate follows "
                                    "the clock and training ends with a final checkpoint and validation in time; "
                                    "overrides the budget planned with `plan --budget`")


def _train(args: argparse.Namespace) -> None:
    from . import api

    tc, explicit = TrainConfig(), set()
    for f in fields(TrainConfig):
        if getattr(args, f.name, None) is not None:
            setattr(tc, f.name, getattr(args, f.name))
            explicit.add(f.name)
    api.train(args.run_dir, args.configuration, args.fold, tc, args.resume, args.budget, explicit)


def _run(args: argparse.Namespace) -> None:
    """Dispatch one parsed command to the typed API."""
    from . import api

    c = args.command
    if c == "plan":
        api.plan(args.dataset, args.out, args.gpu_memory_gb, args.group_by, not args.no_preprocess,
                 args.configurations, args.num_workers, budget=args.budget, device=args.device, preset=args.preset)
    elif c == "preprocess":
        api.preprocess(args.run_dir, args.configurations, args.num_workers)
    elif c == "train":
        _train(args)
    elif c == "crossval":
        api.crossval(args.run_dir, args.configuration)
    elif c == "find-best":
        api.find_best(args.run_dir, args.configurations)
    elif c == "predict":
        api.predict(args.run_dir, args.input, args.output, configuration=args.configuration, folds=args.folds,
                    mirror=not args.no_tta, step=args.step, save_probabilities=args.save_probabilities,
                    device=args.device, num_parts=args.num_parts, part_id=args.part_id, skip_done=args.skip_done,
                    postprocessing=not args.no_postprocessing)
    elif c == "evaluate":
        api.evaluate(args.pred_dir, args.labels_dir, args.dataset_json, args.out, args.cases, args.report,
                     args.images, args.hc_reference, args.hc_label, args.hc_inset_px, args.vessel_label)
    elif c == "demo":
        api.demo(args.out, args.epochs, args.iters_per_epoch, args.batch_size, budget=args.budget,
                 device=args.device)
    elif c == "submit":
        _submit(args)
    elif c == "verify":
        api.verify(args.dataset)
    elif c == "plugins":
        api.plugins()
    else:
        _run_sharing_command(args)


def _submit(args: argparse.Namespace) -> None:
    """`autoseg submit`: the namespace as keywords; this parser goes along, so the jobs' autoseg arguments are
    checked at submission (cluster sits below cli and does not import it)."""
    from .cluster.submit import submit

    submit(args.run_dir, scheduler=args.scheduler, configurations=args.configurations, folds=args.folds,
           train_args=args.train_args, after_folds=args.after_folds, predict=args.predict, inp=args.input,
           out=args.output, num_parts=args.num_parts, predict_args=args.predict_args, partition=args.partition,
           gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, time_limit=args.time,
           max_parallel=args.max_parallel, sbatch_args=args.sbatch_arg, dry_run=args.dry_run, wait=args.wait,
           show_status=args.status, resubmit=args.resubmit_failed, parser=_parser())


def _check_args(args: argparse.Namespace) -> None:
    """Flag values the parser cannot check (train's are checked by the train command itself)."""
    if args.command == "predict":
        from .inference.predictor import check_step

        check_step(args.step)
    if args.command in ("plan", "preprocess") and args.num_workers < 1:
        raise AutosegError(f"-j/--num-workers {args.num_workers}: give at least 1")
    if args.command == "plan" and args.gpu_memory_gb is not None and not (0 < args.gpu_memory_gb < 1e4):
        raise AutosegError(f"--gpu-memory-gb {args.gpu_memory_gb}: give the GPU memory in GB, e.g. 8")


INTERRUPTIBLE = ("plan", "preprocess", "predict", "evaluate", "verify")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .training.interrupt import TrainingInterrupted

    # temporary files and locks are cleaned up on the way out; finished files stay
    restore = raise_on_sigterm() if args.command in INTERRUPTIBLE else (lambda: None)
    try:
        _check_args(args)
        _run(args)
    except AutosegError as e:
        print(f"autoseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"autoseg {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # SIGTERM too, for the commands that turn it into an interrupt
        if args.command in INTERRUPTIBLE:
            print(f"autoseg {args.command}: interrupted; finished files are kept, run the same command again to "
                  "continue", file=sys.stderr)
        else:  # outside training's own handling (e.g. the parent of DDP processes)
            print(f"autoseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        restore()
    return 0


if __name__ == "__main__":
    sys.exit(main())
