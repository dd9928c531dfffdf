"""Regenerate tests/references/nnunet/ from nnU-Net v2 itself, so that the comparisons with nnU-Net run in CI
without it.

    bash benchmarks/make_nnunet_references.sh [plans] [networks] [model]     (creates the venv if absent)
    PYTHONPATH=$PWD python -m benchmarks.nnunet_references [--parts ...] [--work DIR]

Run with autoseg's python from the repository root; nnU-Net runs in its own virtual environment ($NNUNET_VENV,
default /tmp/nnunet_venv). Parts:

- plans: nnU-Net's planners (default, ResEnc M/L/XL) on the 45 datasets of benchmarks/plan_diff, trimmed to the
  fields compare.py reads -> plans.json (tests/test_plan_diff.py);
- networks: nnU-Net's PlainConvUNet and ResidualEncoderUNet built from some of those plans (2d and 3d, default and
  ResEnc) and from small hand-made arguments: state-dict keys and shapes, parameter count, feature-map estimate,
  output shapes of the small ones -> networks.json (tests/test_networks.py, tests/test_nnunet_import.py);
- model: a tiny nnU-Net-trained 2d model on a phantom (nnU-Net's plan with the features capped, a few epochs on
  the CPU, fold 0) as nnU-Net writes it, four test images and `nnUNetv2_predict`'s label maps for them -> model/
  (tests/test_nnunet_import.py: the imported model must predict the same labels).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = ROOT / "tests" / "references" / "nnunet"
MODEL_DATASET = "Dataset902_AutosegReference"
MODEL_FOLDER = "nnUNetTrainer__nnUNetPlans__2d"
FEATURE_CAP = 32  # the model's features per stage are capped here (nnU-Net's 2d plan goes to 512): a small file
EPOCHS, ITERS, BATCH = 6, 25, 8

# networks built from nnU-Net's plans: (dataset substring, preset, configuration)
PLAN_NETWORKS = [("mr_aniso_first_few", "default", "2d"), ("mr_aniso_first_few", "default", "3d_fullres"),
                 ("mr_aniso_first_few", "resenc-m", "2d"), ("mr_aniso_first_few", "resenc-m", "3d_fullres"),
                 ("ct_iso_large", "resenc-l", "3d_lowres"), ("brain_masked", "resenc-xl", "3d_fullres"),
                 ("brain_masked", "default", "3d_fullres"), ("2d_huge_2048", "resenc-m", "2d")]


def venv() -> Path:
    return Path(os.environ.get("NNUNET_VENV", "/tmp/nnunet_venv"))


def nnunet_version() -> str:
    r = subprocess.run([str(venv() / "bin" / "python"), "-c",
                        "import importlib.metadata as m; print(m.version('nnunetv2'), m.version('torch'), "
                        "m.version('dynamic_network_architectures'))"],
                       capture_output=True, text=True, check=True, env=_nnunet_env())
    nn, torch, dna = r.stdout.split()
    return f"nnunetv2 {nn} (dynamic-network-architectures {dna}, torch {torch})"


def _nnunet_env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env.pop("PYTHONPATH", None)  # nnU-Net's interpreter must not see autoseg's path
    return env


def _write(path: Path, obj) -> None:
    """Compact JSON, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    tmp.replace(path)


def _dump(work: Path) -> tuple[dict, list]:
    """nnU-Net's planner dump for every plan_diff dataset (cached in work by the harness)."""
    from benchmarks.plan_diff import __main__ as harness

    dump = harness.prepare(work / "plan_diff", 0, None, refresh=False)
    return dump, json.loads((work / "plan_diff" / "index.json").read_text())


def make_plans(work: Path, version: str) -> None:
    from benchmarks.plan_diff.compare import index_digest, trim_dump

    dump, index = _dump(work)
    _write(OUT / "plans.json", {"nnunet": version, "generator": {"seed": 0, "index_sha256": index_digest(index)},
                                "datasets": trim_dump(dump)})


def _small_cases() -> list[dict]:
    """Hand-made arguments (nnU-Net's plans form) small enough to run a forward pass: output shapes too."""
    def arch(dim, n_blocks=None, feats=(4, 8, 16, 16), kernels=None, strides=None, n_conv=(2, 2, 2, 2), dec=None):
        n = len(feats)
        conv = "Conv2d" if dim == 2 else "Conv3d"
        kw = {"n_stages": n, "features_per_stage": list(feats), "conv_op": f"torch.nn.modules.conv.{conv}",
              "kernel_sizes": kernels or [[3] * dim] * n, "strides": strides or [[1] * dim] + [[2] * dim] * (n - 1),
              "n_conv_per_stage_decoder": dec or ([1] * (n - 1) if n_blocks else [2] * (n - 1)), "conv_bias": True,
              "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
              "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
        if n_blocks:
            kw["n_blocks_per_stage"] = list(n_blocks)
        else:
            kw["n_conv_per_stage"] = list(n_conv)
        return kw

    k3 = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    s3 = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    cases = [("small 2d plain", "PlainConvUNet", arch(2), 2, 3, [32, 24]),
             ("small 3d plain, anisotropic", "PlainConvUNet", arch(3, kernels=k3, strides=s3, n_conv=(1, 2, 3, 2),
                                                                  dec=[1, 2, 3]), 2, 3, [8, 32, 16]),
             ("small 2d resenc", "ResidualEncoderUNet", arch(2, n_blocks=(1, 3, 4, 6)), 2, 3, [32, 24]),
             ("small 3d resenc M blocks", "ResidualEncoderUNet",
              arch(3, n_blocks=(1, 3, 4, 6, 6, 6), feats=(4, 8, 16, 32, 32, 32),
                   kernels=[[1, 3, 3]] + [[3, 3, 3]] * 5,
                   strides=[[1, 1, 1], [1, 2, 2]] + [[2, 2, 2]] * 2 + [[1, 2, 2]] * 2), 2, 3, [8, 64, 64]),
             ("small 2d resenc, 3 channels 5 classes", "ResidualEncoderUNet", arch(2, n_blocks=(2, 2, 2, 2)), 3, 5,
              [16, 16])]
    pkg = "dynamic_network_architectures.architectures.unet."
    return [{"label": label, "network_class_name": pkg + cls, "arch_kwargs": kw,
             "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"], "input_channels": ch,
             "num_classes": nc, "patch_size": patch, "forward": True} for label, cls, kw, ch, nc, patch in cases]


def make_networks(work: Path, version: str) -> None:
    dump, _ = _dump(work)
    cases = []
    for sub, preset, config in PLAN_NETWORKS:
        name = next(n for n in dump if sub in n)
        plans = dump[name]["plans"][preset]
        c = plans["configurations"][config]
        while "architecture" not in c or "patch_size" not in c:
            c = {**plans["configurations"][c.pop("inherits_from")], **c}
        a = c["architecture"]
        fp = dump[name]["fingerprint"]
        n_labels = next(e for e in json.loads((work / "plan_diff" / "index.json").read_text())
                        if e["name"] == name)["spec"]["n_labels"]
        cases.append({"label": f"{name} {preset} {config}", "network_class_name": a["network_class_name"],
                      "arch_kwargs": a["arch_kwargs"], "_kw_requires_import": a["_kw_requires_import"],
                      "input_channels": len(fp["foreground_intensity_properties_per_channel"]),
                      "num_classes": n_labels + 1, "patch_size": c["patch_size"], "forward": False})
    cases += _small_cases()
    r = subprocess.run([str(venv() / "bin" / "python"), str(HERE / "networks_dump.py")], input=json.dumps(cases),
                       capture_output=True, text=True, env=_nnunet_env(), check=False)
    if r.returncode:
        raise SystemExit(f"networks_dump.py failed:\n{r.stderr[-3000:]}")
    _write(OUT / "networks.json", {"nnunet": version, "networks": json.loads(r.stdout)})


def _run(cmd: list[str], env: dict, log: Path) -> None:
    with open(log, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {r.returncode}); see {log}:\n{log.read_text()[-3000:]}")


def make_model(work: Path, version: str) -> dict:
    """Train nnU-Net's tiny model, predict with nnUNetv2_predict, copy what the tests need. Returns the commands."""
    from autoseg.datasets.phantom import make_phantom_dataset

    w = work / "model"
    if w.exists():
        shutil.rmtree(w)
    raw = w / "raw" / MODEL_DATASET
    make_phantom_dataset(raw, n_train_patients=5, n_test_patients=2, seed=3, size=48, spacing=(1.75, 8.0))
    env = _nnunet_env(nnUNet_raw=str(w / "raw"), nnUNet_preprocessed=str(w / "pre"), nnUNet_results=str(w / "res"))
    bin_ = venv() / "bin"
    cmds = {"plan": [str(bin_ / "nnUNetv2_plan_and_preprocess"), "-d", "902", "-c", "2d", "-np", "1"]}
    _run(cmds["plan"], env, w / "plan.log")
    plans_file = w / "pre" / MODEL_DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    kw = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [min(f, FEATURE_CAP) for f in kw["features_per_stage"]]
    plans_file.write_text(json.dumps(plans, indent=4))
    cmds["train"] = [str(bin_ / "python"), str(ROOT / "benchmarks" / "nnunet_train.py"), "902", "2d", "0",
                     "--epochs", str(EPOCHS), "--iters", str(ITERS), "--val-iters", "1", "--batch-size", str(BATCH),
                     "--no-validation"]
    t0 = time.time()
    _run(cmds["train"], dict(env, nnUNet_n_proc_DA="0"), w / "train.log")
    train_s = time.time() - t0
    cmds["predict"] = [str(bin_ / "nnUNetv2_predict"), "-d", "902", "-c", "2d", "-f", "0", "-i",
                       str(raw / "imagesTs"), "-o", str(w / "pred"), "-device", "cpu", "-npp", "1", "-nps", "1"]
    _run(cmds["predict"], env, w / "predict.log")

    dst = OUT / "model"
    tmp = OUT / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    src = w / "res" / MODEL_DATASET / MODEL_FOLDER
    (tmp / MODEL_FOLDER / "fold_0").mkdir(parents=True)
    for f in ("plans.json", "dataset.json"):
        shutil.copy2(src / f, tmp / MODEL_FOLDER / f)
    shutil.copy2(src / "fold_0" / "checkpoint_final.pth", tmp / MODEL_FOLDER / "fold_0" / "checkpoint_final.pth")
    shutil.copytree(raw / "imagesTs", tmp / "imagesTs")
    (tmp / "predictions_nnunet").mkdir()
    for p in sorted((w / "pred").glob("*.nii.gz")):
        shutil.copy2(p, tmp / "predictions_nnunet" / p.name)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    print(f"model: trained {EPOCHS} epochs x {ITERS} iterations in {train_s:.0f} s", flush=True)
    def shown(cmd: list[str]) -> str:  # no machine paths in the README
        return " ".join([Path(cmd[0]).name] + [c.replace(str(ROOT) + "/", "").replace(str(w), "$WORK")
                                               for c in cmd[1:]])

    return {"train_seconds": round(train_s), **{k: shown(v) for k, v in cmds.items()}}


def write_readme(version: str, model_cmds: dict | None) -> None:
    files = sorted(p for p in OUT.rglob("*") if p.is_file() and p.name != "README.md")
    sizes = "\n".join(f"- `{p.relative_to(OUT)}`: {p.stat().st_size / 1024:.0f} KB" for p in files)
    prev = (OUT / "README.md").read_text() if (OUT / "README.md").is_file() else ""
    model = ""
    if model_cmds:
        model = (f"The model (phantom `{MODEL_DATASET}`: 5 training patients, 2 test patients = 4 test images, "
                 f"48x48 in-plane at 1.75 mm, 8 mm slices; nnU-Net's 2d plan with features capped at {FEATURE_CAP}; "
                 f"fold 0, {EPOCHS} epochs x {ITERS} iterations at batch {BATCH} on the CPU, "
                 f"{model_cmds['train_seconds']} s):\n\n```\n{model_cmds['plan']}\n"
                 f"(features_per_stage capped at {FEATURE_CAP} in nnUNetPlans.json)\n{model_cmds['train']}\n"
                 f"{model_cmds['predict']}\n```")
    elif "## Model commands" in prev:  # this run did not make the model: keep what the README said of it
        model = prev[prev.index("## Model commands") + len("## Model commands"):prev.index("## Files")].strip()
    text = (f"# nnU-Net v2 reference outputs (generated, do not edit)\n\nMade by {version} on "
            f"{datetime.date.today().isoformat()} with\n\n```bash\nbash benchmarks/make_nnunet_references.sh\n```\n\n"
            "(see benchmarks/nnunet_references/__main__.py). The tests that read these files run without nnU-Net; "
            "rerun the command after a change to benchmarks/plan_diff/datasets.py (test_plan_diff then says so).\n\n"
            "- `plans.json`: nnU-Net's plans (default, ResEnc M/L/XL planners) for the 45 datasets of "
            "benchmarks/plan_diff, only the fields compare.py reads, with the fingerprints and per-case separate-z "
            "decisions (tests/test_plan_diff.py);\n"
            "- `networks.json`: nnU-Net's PlainConvUNet and ResidualEncoderUNet built from some of those plans and "
            "from small hand-made arguments: state-dict keys and shapes, parameter counts, feature-map estimates, "
            "output shapes of the small ones (tests/test_networks.py, tests/test_nnunet_import.py);\n"
            "- `model/`: a tiny model trained by nnU-Net, as nnU-Net writes it, four test images and "
            "nnUNetv2_predict's label maps for them (tests/test_nnunet_import.py, the import's known answer).\n\n"
            f"## Model commands\n\n{model}\n\n## Files\n\n{sizes}\n")
    (OUT / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="*", choices=["plans", "networks", "model"],
                    default=["plans", "networks", "model"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/autoseg_nnunet_references"),
                    help="scratch folder (nnU-Net's planner dump is cached here)")
    a = ap.parse_args(argv)
    if not (venv() / "bin" / "nnUNetv2_predict").is_file():
        raise SystemExit(f"nnU-Net not found in {venv()}: run benchmarks/make_nnunet_references.sh (it creates the "
                         "venv) or set NNUNET_VENV")
    version = nnunet_version()
    a.work.mkdir(parents=True, exist_ok=True)
    model_cmds = None
    for part in a.parts:
        t0 = time.time()
        if part == "plans":
            make_plans(a.work, version)
        elif part == "networks":
            make_networks(a.work, version)
        else:
            model_cmds = make_model(a.work, version)
        print(f"{part}: {time.time() - t0:.0f} s", flush=True)
    write_readme(version, model_cmds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
