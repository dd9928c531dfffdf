"""nnU-Net's own model, predicted by nnU-Net and by autoseg after `autoseg import-nnunet`: same labels? how fast?

Trains a tiny nnU-Net v2 model on CPU in nnU-Net's own virtual environment (a phantom with one spacing for every
case, nnU-Net's default 2d plan, a few iterations: the model need not be good, only the same in both tools),
predicts the held-out cases with `nnUNetv2_predict` and with `autoseg predict` on the imported run, and reports
the Dice per case and label between the two, whether the geometry is the same, and each tool's wall time.

    python benchmarks/nnunet_import_check.py WORK_DIR [--iters 30] [--venv /tmp/nnunet_venv]

The venv is taken from --venv, else NNUNET_VENV, else /tmp/nnunet_venv. tests/test_nnunet_import.py runs the
committed form of this check without nnU-Net (tests/references/nnunet/model, made by
benchmarks/make_nnunet_references.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
DATASET = "Dataset901_AutosegImportCheck"
CONFIG_DIR = "nnUNetTrainer__nnUNetPlans__2d"


def venv_path(venv: str | None = None) -> Path:
    return Path(venv or os.environ.get("NNUNET_VENV", "/tmp/nnunet_venv"))


def _env(work: Path) -> dict:
    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"),
               nnUNet_results=str(work / "res"), OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # nnU-Net's interpreter must not see autoseg's path
    return env


def _run(cmd: list[str], env: dict, log: Path) -> float:
    t0 = time.time()
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed (exit {r.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return time.time() - t0


def train_nnunet(work: Path, venv: Path, iters: int) -> Path:
    """Phantom dataset -> nnU-Net plan/preprocess (2d) -> train fold 'all'. Returns the trained model folder."""
    from autoseg.datasets.phantom import make_phantom_dataset

    raw = work / "raw" / DATASET
    make_phantom_dataset(raw, n_train_patients=5, n_test_patients=2, seed=3, size=48, spacing=(1.75, 8.0))
    for d in ("pre", "res"):
        (work / d).mkdir(parents=True, exist_ok=True)
    env = _env(work)
    _run([str(venv / "bin" / "nnUNetv2_plan_and_preprocess"), "-d", "901", "-c", "2d", "-np", "1"],
         dict(env, nnUNet_n_proc_DA="1"), work / "nnunet_plan.log")
    _run([str(venv / "bin" / "python"), str(HERE / "nnunet_train.py"), "901", "2d", "all", "--epochs", "1",
          "--iters", str(iters), "--val-iters", "1", "--no-validation"], dict(env, nnUNet_n_proc_DA="0"),
         work / "nnunet_train.log")
    return work / "res" / DATASET / CONFIG_DIR


def predict_nnunet(work: Path, venv: Path, out: Path) -> float:
    images = work / "raw" / DATASET / "imagesTs"
    return _run([str(venv / "bin" / "nnUNetv2_predict"), "-d", "901", "-c", "2d", "-f", "all", "-i", str(images),
                 "-o", str(out), "-device", "cpu", "-npp", "1", "-nps", "1"], _env(work), work / "nnunet_predict.log")


def predict_autoseg(work: Path, model_dir: Path, run: Path, out: Path) -> tuple[float, float]:
    """(import seconds, predict seconds), each a fresh `python -m autoseg.cli` process as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), OMP_NUM_THREADS="1")
    t_import = _run([sys.executable, "-m", "autoseg.cli", "import-nnunet", str(model_dir), "--out", str(run)], env,
                    work / "autoseg_import.log")
    images = work / "raw" / DATASET / "imagesTs"
    t_pred = _run([sys.executable, "-m", "autoseg.cli", "predict", str(run), "-i", str(images), "-o", str(out),
                   "--device", "cpu"], env, work / "autoseg_predict.log")
    return t_import, t_pred


def compare(a_dir: Path, b_dir: Path, labels: list[int]) -> dict:
    """Per case: Dice per label between two prediction folders, and whether the geometry is identical."""
    out = {}
    files = sorted(a_dir.glob("*.nii.gz"))
    if not files:
        raise RuntimeError(f"{a_dir}: no predictions")
    for fa in files:
        a, b = sitk.ReadImage(str(fa)), sitk.ReadImage(str(b_dir / fa.name))
        x, y = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        dice = {}
        for v in labels:
            s = int((x == v).sum() + (y == v).sum())
            dice[v] = 1.0 if s == 0 else 2 * int(((x == v) & (y == v)).sum()) / s
        out[fa.name] = {"dice": dice, "same_voxels": float((x == y).mean()),
                        "same_geometry": a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing()
                        and a.GetOrigin() == b.GetOrigin() and np.allclose(a.GetDirection(), b.GetDirection())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--venv")
    a = ap.parse_args()
    venv = venv_path(a.venv)
    a.work.mkdir(parents=True, exist_ok=False)
    t0 = time.time()
    model = train_nnunet(a.work, venv, a.iters)
    t_train = time.time() - t0
    t_nn = predict_nnunet(a.work, venv, a.work / "pred_nnunet")
    t_imp, t_as = predict_autoseg(a.work, model, a.work / "run", a.work / "pred_autoseg")
    result = compare(a.work / "pred_nnunet", a.work / "pred_autoseg", [1, 2, 3])
    n = len(result)
    summary = {"cases": n, "min_dice": min(min(r["dice"].values()) for r in result.values()),
               "all_same_geometry": all(r["same_geometry"] for r in result.values()),
               "nnunet_train_and_plan_s": round(t_train, 1), "nnunet_predict_s": round(t_nn, 1),
               "autoseg_import_s": round(t_imp, 1), "autoseg_predict_s": round(t_as, 1), "per_case": result}
    (a.work / "result.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "per_case"}, indent=2))
    for case, r in result.items():
        print(case, {k: round(v, 5) for k, v in r["dice"].items()}, "same voxels", round(r["same_voxels"], 5))


if __name__ == "__main__":
    main()
