"""Command-line interface: argument parsing only; the work is done by autoseg.api."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .utils import AutosegError, raise_on_sigterm


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoseg", description="Self-configuring medical image segmentation.")
    p.add_argument("--version", action="version", version=f"autoseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("plan", help="fingerprint a dataset, write plans.json and splits.json, preprocess")
    s.add_argument("dataset", help="dataset folder in the nnU-Net v2 raw layout")
    s.add_argument("--out", required=True, help="run folder to create")
    s.add_argument("--gpu-memory-gb", type=float, default=8.0, help="GPU memory target for patch/batch (default 8)")
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

    s = sub.add_parser("train", help="train one fold (0-4) or 'all' of a configuration")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configuration", required=True)
    s.add_argument("-f", "--fold", required=True, help="0..4 or all")
    s.add_argument("--epochs", type=int)
    s.add_argument("--iters-per-epoch", type=int)
    s.add_argument("--val-iters", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float, dest="initial_lr")
    s.add_argument("--num-workers", type=int, help="data-loading worker processes")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--num-gpus", type=int, dest="num_processes",
                   help="train with DistributedDataParallel on N GPUs (the batch is split over them)")
    s.add_argument("--no-amp", action="store_true")
    s.add_argument("--seed", type=int)
    s.add_argument("--save-every", type=int)
    s.add_argument("--no-validation", action="store_true", help="skip the final full-resolution validation")
    s.add_argument("--resume", action="store_true", help="continue from checkpoint_latest.pt")
    s.add_argument("--budget", help="wall-clock budget for this train command (e.g. 20m): the learning rate follows "
                                    "the clock and training ends with a final checkpoint and validation in time; "
                                    "overrides the budget planned with `plan --budget`")

    s = sub.add_parser("predict", help="segment a file or a folder")
    s.add_argument("run_dir")
    s.add_argument("-i", "--input", required=True)
    s.add_argument("-o", "--output", required=True)
    s.add_argument("-c", "--configuration")
    s.add_argument("-f", "--folds", nargs="+", help="fold numbers, or all (default: every trained fold)")
    s.add_argument("--no-tta", action="store_true", help="no test-time mirroring")
    s.add_argument("--step", type=float, default=0.5, help="tile step as a fraction of the patch (default 0.5)")
    s.add_argument("--save-probabilities", action="store_true")
    s.add_argument("--device", default="auto")

    s = sub.add_parser("evaluate", help="Dice, IoU, HD95, ASSD and clinical indices against reference labels")
    s.add_argument("pred_dir")
    s.add_argument("labels_dir")
    s.add_argument("--dataset-json", help="dataset.json naming the labels (default: beside LABELS_DIR)")
    s.add_argument("--cases", help="CSV with columns case, patient, phase (ED/ES) [, view] (default: cases.csv "
                                   "beside dataset.json)")
    s.add_argument("--out", help="folder for summary.json/csv and the report (default: PRED_DIR)")
    s.add_argument("--report", action="store_true", help="write report/report.html with plots and overlays")
    s.add_argument("--images", help="images folder for the overlays (default: imagesXx beside labelsXx)")

    s = sub.add_parser("demo", help="phantom -> plan -> train -> predict -> evaluate, CPU-sized")
    s.add_argument("--out", default="autoseg_demo")
    s.add_argument("--epochs", type=int, default=15)
    s.add_argument("--iters-per-epoch", type=int, default=30)
    s.add_argument("--batch-size", type=int, default=6)

    s = sub.add_parser("verify", help="check every case of a dataset without planning")
    s.add_argument("dataset")
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Flag values the parser cannot check (train's are checked by the train command itself)."""
    if args.command == "predict":
        from .inference.predictor import check_step

        check_step(args.step)
    if args.command in ("plan", "preprocess") and args.num_workers < 1:
        raise AutosegError(f"-j/--num-workers {args.num_workers}: give at least 1")
    if args.command == "plan" and not (0 < args.gpu_memory_gb < 1e4):
        raise AutosegError(f"--gpu-memory-gb {args.gpu_memory_gb}: give the GPU memory in GB, e.g. 8")


INTERRUPTIBLE = ("plan", "preprocess", "predict", "evaluate", "verify")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import api
    from .training.config import TrainConfig

    # temporary files and locks are cleaned up on the way out; finished files stay
    restore = raise_on_sigterm() if args.command in INTERRUPTIBLE else (lambda: None)
    try:
        _check_args(args)
        if args.command == "plan":
            api.plan(args.dataset, args.out, args.gpu_memory_gb, args.group_by, not args.no_preprocess,
                     args.configurations, args.num_workers, budget=args.budget, device=args.device)
        elif args.command == "preprocess":
            api.preprocess(args.run_dir, args.configurations, args.num_workers)
        elif args.command == "train":
            tc = TrainConfig(device=args.device, amp=not args.no_amp, final_validation=not args.no_validation)
            explicit = set()
            for k in ("epochs", "iters_per_epoch", "val_iters", "batch_size", "initial_lr", "num_workers", "seed",
                      "save_every", "num_processes"):
                if getattr(args, k) is not None:
                    setattr(tc, k, getattr(args, k))
                    explicit.add(k)
            api.train(args.run_dir, args.configuration, args.fold, tc, args.resume, args.budget, explicit)
        elif args.command == "predict":
            api.predict(args.run_dir, args.input, args.output, args.configuration, args.folds, not args.no_tta,
                        args.step, args.save_probabilities, args.device)
        elif args.command == "evaluate":
            api.evaluate(args.pred_dir, args.labels_dir, args.dataset_json, args.out, args.cases, args.report,
                         args.images)
        elif args.command == "demo":
            api.demo(args.out, args.epochs, args.iters_per_epoch, args.batch_size)
        elif args.command == "verify":
            api.verify(args.dataset)
    except AutosegError as e:
        print(f"autoseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command not in INTERRUPTIBLE:
            raise
        print(f"autoseg {args.command}: interrupted; finished files are kept, run the same command again to "
              "continue", file=sys.stderr)
        return 130
    finally:
        restore()
    return 0


if __name__ == "__main__":
    sys.exit(main())
