"""Train nnU-Net v2's standard trainer for a set number of epochs and iterations, without its trainer discovery.

nnU-Net's `nnUNetv2_train` finds trainer classes by importing every module under nnunetv2.training; one of them
(Primus) imports timm, which imports a torchvision wheel built for CUDA and fails on a CPU-only torch with
"operator torchvision::nms does not exist". This driver imports the one class it runs, `nnUNetTrainer`, so
nothing else is imported and no package is patched. Run it with nnU-Net's own environment and variables:

    nnUNet_raw=... nnUNet_preprocessed=... nnUNet_results=... \
      /tmp/nnunet_venv/bin/python benchmarks/nnunet_train.py 27 2d 0 --epochs 1 --iters 5 --val-iters 2

With ``--seconds T`` it trains for T seconds of wall time instead of a set number of epochs (the GPU head-to-head,
benchmarks/gpu_head_to_head.sh): the trainer's own hooks run in the order of its ``run_training``, the epoch in
flight stops at T, and after each epoch the poly schedule's length (``num_epochs`` and the scheduler's
``max_steps``) is set to the epochs that fit in T at the last epoch's pace, so the learning rate still decays
towards zero by the end, as it would over nnU-Net's 1000 epochs.
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
    ap.add_argument("--device", default="cpu", help="cpu or cuda (nnU-Net compiles the network on cuda by default)")
    ap.add_argument("--seconds", type=float, help="train for this wall time instead of --epochs")
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
    trainer = nnUNetTrainer(plans, a.configuration, fold, dataset_json, device=torch.device(a.device))
    trainer.num_epochs = a.epochs
    trainer.num_iterations_per_epoch = a.iters
    trainer.num_val_iterations_per_epoch = a.val_iters
    t0 = time.time()
    if a.seconds:
        epochs, iterations, epoch_seconds = train_for(trainer, a.seconds)
    else:
        trainer.run_training()
        epochs, iterations, epoch_seconds = a.epochs, a.epochs * a.iters, []
    train_s = time.time() - t0
    if not a.no_validation:
        trainer.perform_actual_validation()
    print(f"NNUNET_TRAIN epochs={epochs} iters={a.iters} iterations={iterations} "
          f"batch={trainer.configuration_manager.batch_size} train_seconds={train_s:.1f} "
          f"seconds_per_iteration={train_s / max(iterations, 1):.3f} "
          f"epoch_seconds={','.join(f'{x:.2f}' for x in epoch_seconds)}")


def train_for(trainer: nnUNetTrainer, seconds: float) -> tuple[int, int, list[float]]:
    """nnU-Net's run_training, but ending at ``seconds`` of wall time with its poly schedule fitted to that time.
    Returns the epochs begun, the iterations trained and each epoch's seconds."""
    trainer.on_train_start()
    t0 = time.time()
    iterations, epoch_seconds = 0, []
    while True:
        e0 = time.time()
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        outputs = []
        for _ in range(trainer.num_iterations_per_epoch):
            outputs.append(trainer.train_step(next(trainer.dataloader_train)))
            if time.time() - t0 >= seconds:
                break
        iterations += len(outputs)
        trainer.on_train_epoch_end(outputs)
        with torch.no_grad():
            trainer.on_validation_epoch_start()
            val = [trainer.validation_step(next(trainer.dataloader_val))
                   for _ in range(trainer.num_val_iterations_per_epoch)]
            trainer.on_validation_epoch_end(val)
        trainer.on_epoch_end()  # increments current_epoch
        epoch_seconds.append(time.time() - e0)
        left = seconds - (time.time() - t0)
        if left <= 0:
            break
        fit = trainer.current_epoch + max(1, round(left / epoch_seconds[-1]))
        trainer.num_epochs = fit
        trainer.lr_scheduler.max_steps = fit
    trainer.on_train_end()
    return trainer.current_epoch, iterations, epoch_seconds


if __name__ == "__main__":
    main()
