"""Train nnU-Net v2's standard trainer for a set number of epochs and iterations, without its trainer discovery.

nnU-Net's `nnUNetv2_train` finds trainer classes by importing every module under nnunetv2.training; one of them
(Primus) imports timm, which imports a torchvision wheel built for CUDA and fails on a CPU-only torch with
"operator torchvision::nms does not exist". This driver imports the one class it runs, `nnUNetTrainer`, so
nothing else is imported and no package is patched. Run it with nnU-Net's own environment and variables:

    nnUNet_raw=... nnUNet_preprocessed=... nnUNet_results=... \
      /tmp/nnunet_venv/bin/python benchmarks/nnunet_train.py 27 2d 0 --epochs 1 --iters 5 --val-iters 2
"""
import argparse
import json
import os
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset_id")
    ap.add_argument("configuration")
    ap.add_argument("fold")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=250)
    ap.add_argument("--val-iters", type=int, default=50)
    ap.add_argument("--batch-size", type=int, help="override the plan's batch size (identical-configuration runs)")
    ap.add_argument("--no-validation", action="store_true")
    a = ap.parse_args()
    name = maybe_convert_to_dataset_name(a.dataset_id)
    pre = os.path.join(os.environ["nnUNet_preprocessed"], name)
    with open(os.path.join(pre, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    if a.batch_size:
        plans["configurations"][a.configuration]["batch_size"] = a.batch_size
    plans["continue_training"] = False  # nnU-Net's own launcher sets this key before building the trainer
    with open(os.path.join(pre, "dataset.json")) as f:
        dataset_json = json.load(f)
    fold = a.fold if a.fold == "all" else int(a.fold)
    trainer = nnUNetTrainer(plans, a.configuration, fold, dataset_json, device=torch.device("cpu"))
    trainer.num_epochs = a.epochs
    trainer.num_iterations_per_epoch = a.iters
    trainer.num_val_iterations_per_epoch = a.val_iters
    t0 = time.time()
    trainer.run_training()
    train_s = time.time() - t0
    if not a.no_validation:
        trainer.perform_actual_validation()
    print(f"NNUNET_TRAIN epochs={a.epochs} iters={a.iters} train_seconds={train_s:.1f} "
          f"seconds_per_iteration={train_s / (a.epochs * a.iters):.3f}")


if __name__ == "__main__":
    main()
