"""Command-line interface: argument parsing only; the work is done by autoseg.api."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from . import __version__
from .training.config import TrainConfig
from .utils import AutosegError


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

    _add_train(sub)
    s = sub.add_parser("crossval", help="score all folds' validation together, decide postprocessing, pick the best "
                                        "configuration (runs by itself after the last fold's `train`)")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configuration", required=True)

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


def _add_train(sub) -> None:
    s = sub.add_parser("train", help="train one fold (0-4) or 'all' of a configuration")
    s.add_argument("run_dir")
    s.add_argument("-c", "--configuration", required=True)
    s.add_argument("-f", "--fold", required=True, help="0..4 or all")
    for f in fields(TrainConfig):  # every hyper-parameter, from the dataclass
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if meta.get("negate"):
            s.add_argument(flag, dest=f.name, action="store_false", default=None, help=meta["help"])
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import api
    from .training.interrupt import TrainingInterrupted

    try:
        if args.command == "plan":
            api.plan(args.dataset, args.out, args.gpu_memory_gb, args.group_by, not args.no_preprocess,
                     args.configurations, args.num_workers, budget=args.budget, device=args.device)
        elif args.command == "preprocess":
            api.preprocess(args.run_dir, args.configurations, args.num_workers)
        elif args.command == "train":
            _train(args)
        elif args.command == "crossval":
            api.crossval(args.run_dir, args.configuration)
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
    except TrainingInterrupted as e:
        print(f"autoseg {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # outside training's own handling (e.g. the parent of DDP processes)
        print(f"autoseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
