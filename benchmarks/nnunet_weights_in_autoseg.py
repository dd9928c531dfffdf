"""Put the weights of an nnU-Net v2 model into an autoseg run of the same configuration, to predict with autoseg.

This separates the two halves of a head-to-head: if autoseg's predictor, given nnU-Net's trained weights, scores
what nnU-Net's own predictor scores, any difference between the tools lies in training, not in inference.

    python benchmarks/nnunet_weights_in_autoseg.py AUTOSEG_RUN NNUNET_CHECKPOINT NEW_RUN [-c 2d]
    autoseg predict NEW_RUN -i IMAGES -o PRED -c 2d -f all

AUTOSEG_RUN must hold a trained fold_all of the configuration that nnU-Net trained (benchmarks/nnunet_same_config.py
copies it to nnU-Net); its plans and checkpoint layout are copied and only the network weights are replaced. nnU-Net's
checkpoint is a pickle with numpy objects in it, so it is read with weights_only=False: use it only on checkpoints
you made yourself.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from autoseg.sharing.nnunet_import import convert_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("autoseg_run", type=Path)
    ap.add_argument("nnunet_checkpoint", type=Path)
    ap.add_argument("new_run", type=Path)
    ap.add_argument("-c", "--configuration", default="2d")
    a = ap.parse_args()
    src = a.autoseg_run / a.configuration / "fold_all" / "checkpoint_final.pt"
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    theirs = torch.load(a.nnunet_checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    new = convert_weights(theirs, a.nnunet_checkpoint)  # the same renaming as `autoseg import-nnunet`
    ours = ckpt["network_weights"]
    if set(new) != set(ours):
        raise SystemExit(f"parameter names differ: {sorted(set(new) ^ set(ours))[:6]}")
    bad = [k for k in ours if tuple(new[k].shape) != tuple(ours[k].shape)]
    if bad:
        raise SystemExit(f"shapes differ (not the same configuration?): {bad[:6]}")
    ckpt["network_weights"] = new
    dst = a.new_run / a.configuration / "fold_all"
    dst.mkdir(parents=True, exist_ok=False)
    for name in ("plans.json", "fingerprint.json", "splits.json"):
        if (a.autoseg_run / name).is_file():
            shutil.copy2(a.autoseg_run / name, a.new_run / name)
    torch.save(ckpt, dst / "checkpoint_final.pt")
    print(f"{len(new)} tensors from {a.nnunet_checkpoint} -> {dst / 'checkpoint_final.pt'}")


if __name__ == "__main__":
    main()
