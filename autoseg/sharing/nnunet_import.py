"""Make an autoseg run from an nnU-Net v2 trained model folder, so that `autoseg predict` runs nnU-Net's models.

The folder is nnU-Net's results folder of one trainer, plans and configuration
(``<Trainer>__<Plans>__<configuration>/`` with ``plans.json``, ``dataset.json``, ``dataset_fingerprint.json`` and
``fold_<k>/checkpoint_final.pth``). Its plans are translated into autoseg's (spacing, patch, transposition,
normalisation, resampling orders, the U-Net's stages, kernels, strides and features), and the PlainConvUNet
weights are renamed to autoseg's U-Net, whose modules are the same ones in the same order.

nnU-Net's checkpoints are pickles that also hold numpy scalars, a torch.device and the trainer's arguments. They
are read with ``torch.load(weights_only=True)`` plus numpy's scalar constructor, ``numpy.dtype`` and the plain
numeric dtype classes allowed: no pickled code can run, and a checkpoint naming anything else is refused with the name.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import torch

from ..core.errors import AutosegError
from ..core.jsonio import load_json, save_json
from ..io.workspace import Workspace
from ..networks import build_network
from ..planner.plans import PLANS_VERSION, Architecture, ConfigurationPlan, Plans

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net resamples the coarse axis on its own beyond this spacing ratio
SUPPORTED_NORMS = {"ZScoreNormalization", "CTNormalization", "NoNormalization", "RGBTo01Normalization"}

# nnU-Net PlainConvUNet parameter names -> autoseg PlainConvUNet names (same modules, same order)
WEIGHT_RULES = [
    (r"encoder\.stages\.(\d+)\.0\.convs\.(\d+)\.(conv|norm)\.(weight|bias)", "encoder.{0}.{1}.{2}.{3}"),
    (r"decoder\.stages\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(weight|bias)", "decoder.{0}.{1}.{2}.{3}"),
    (r"decoder\.transpconvs\.(\d+)\.(weight|bias)", "upsample.{0}.{1}"),
    (r"decoder\.seg_layers\.(\d+)\.(weight|bias)", "heads.{0}.{1}"),
]


def _numpy_safe_globals() -> list:
    """The numpy types nnU-Net's checkpoints pickle (logged Dice values and the best EMA are numpy scalars)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                          "uint64", "float16", "float32", "float64")]
    return [np.dtype, scalar, *dict.fromkeys(dtypes)]


def load_nnunet_checkpoint(path: Path) -> dict:
    """Read an nnU-Net checkpoint without executing pickled code; refuse any type beyond the allow-list."""
    if not path.is_file():
        raise AutosegError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for a disallowed global; anything else: damaged file
        m = re.search(r"GLOBAL ([\w.]+(?: [\w.]+)?)|got <class '([\w.]+)'>", str(e))
        if m:
            raise AutosegError(f"{path}: refused: the checkpoint holds {m.group(1) or m.group(2)!r}, which is not "
                               "one of the plain types an nnU-Net checkpoint holds; it was not loaded and none of it "
                               "ran") from None
        raise AutosegError(f"{path}: cannot be read as an nnU-Net checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network_weights"), dict):
        raise AutosegError(f"{path}: no 'network_weights' in it; is this an nnU-Net v2 checkpoint_*.pth?")
    return ckpt


def convert_weights(nnunet_weights: dict, where: Path) -> dict:
    """Rename nnU-Net PlainConvUNet parameters to autoseg's; duplicate registrations are dropped."""
    out = {}
    for key, value in nnunet_weights.items():
        # nnU-Net registers each conv/norm twice (also under all_modules) and the encoder again inside the decoder
        if ".all_modules." in key or key.startswith("decoder.encoder."):
            continue
        for pattern, target in WEIGHT_RULES:
            m = re.fullmatch(pattern, key)
            if m:
                g = list(m.groups())
                if len(g) == 4:
                    g[2] = "0" if g[2] == "conv" else "1"
                out[target.format(*g)] = value
                break
        else:
            raise AutosegError(f"{where}: parameter {key!r} is not part of a PlainConvUNet; only nnU-Net's "
                               "default PlainConvUNet models can be imported")
    return out


def _architecture(arch: dict, num_channels: int, num_classes: int, where: str) -> Architecture:
    name = str(arch.get("network_class_name", ""))
    kw = arch.get("arch_kwargs", {})
    if not name.endswith(".PlainConvUNet") and name != "PlainConvUNet":
        raise AutosegError(f"{where}: network {name!r} cannot be imported yet (supported: nnU-Net's default "
                           "PlainConvUNet)")
    checks = [("conv_op", ("Conv2d", "Conv3d")), ("norm_op", ("InstanceNorm2d", "InstanceNorm3d")),
              ("nonlin", ("LeakyReLU",))]
    for key, allowed in checks:
        if str(kw.get(key, "")).split(".")[-1] not in allowed:
            raise AutosegError(f"{where}: {key} {kw.get(key)!r} is not supported (autoseg's U-Net uses "
                               f"{'/'.join(allowed)})")
    if kw.get("dropout_op") or not kw.get("conv_bias", False) or not (kw.get("norm_op_kwargs") or {}).get("affine"):
        raise AutosegError(f"{where}: dropout, bias-free convolutions or non-affine norms are not supported")
    n = int(kw["n_stages"])
    dec = list(kw["n_conv_per_stage_decoder"])
    return Architecture("PlainConvUNet", {
        "dim": 2 if str(kw["conv_op"]).endswith("2d") else 3, "input_channels": num_channels,
        "num_classes": num_classes, "n_stages": n, "features_per_stage": [int(f) for f in kw["features_per_stage"]],
        "kernel_sizes": [[int(k) for k in ks] for ks in kw["kernel_sizes"]],
        "strides": [[int(s) for s in ss] for ss in kw["strides"]],
        "n_conv_per_stage": [int(c) for c in kw["n_conv_per_stage"]],
        # nnU-Net lists decoder stages deepest first; autoseg indexes them by the encoder stage they return to
        "n_conv_per_stage_decoder": [int(c) for c in dec[::-1]][: n - 1],
        "deep_supervision": True, "norm": "InstanceNorm", "nonlin": "LeakyReLU",
        "negative_slope": float((kw.get("nonlin_kwargs") or {}).get("negative_slope", 0.01))})


def _resampling(kwargs: dict, spacing: list[float], where: str) -> dict:
    if kwargs.get("force_separate_z"):
        raise AutosegError(f"{where}: force_separate_z is not supported")
    # nnU-Net decides per image; autoseg per configuration, from the planned spacing (the same rule)
    sep = len(spacing) == 3 and max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD
    return {"order": int(kwargs.get("order", 3)), "separate_z": bool(sep), "order_z": int(kwargs.get("order_z", 0))}


def resolve_configuration(plans: dict, name: str) -> dict:
    """A configuration with nnU-Net's ``inherits_from`` chain applied."""
    confs = plans.get("configurations", {})
    if name not in confs:
        raise AutosegError(f"configuration {name!r} is not in nnU-Net's plans.json (has {sorted(confs)})")
    c = dict(confs[name])
    parent = c.pop("inherits_from", None)
    return {**resolve_configuration(plans, parent), **c} if parent else c


def translate_plans(nn_plans: dict, dataset_json: dict, config: str, where: Path) -> Plans:
    """nnU-Net v2 plans.json + dataset.json -> autoseg Plans with one configuration."""
    labels = dataset_json.get("labels", {})
    if not labels or not all(isinstance(v, int) for v in labels.values()):
        raise AutosegError(f"{where}/dataset.json: region-based or missing labels cannot be imported")
    if "ignore" in labels:
        raise AutosegError(f"{where}/dataset.json: models trained with an 'ignore' label cannot be imported yet")
    if sorted(labels.values()) != list(range(len(labels))):
        raise AutosegError(f"{where}/dataset.json: label values {sorted(labels.values())} are not 0..K-1")
    channels = dataset_json.get("channel_names") or dataset_json.get("modality")
    c = resolve_configuration(nn_plans, config)
    if c.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
        raise AutosegError(f"{where}/plans.json: preprocessor {c['preprocessor_name']!r} is not supported")
    bad = sorted(set(c["normalization_schemes"]) - SUPPORTED_NORMS)
    if bad:
        raise AutosegError(f"{where}/plans.json: normalisation scheme(s) {bad} are not supported")
    for k in ("resampling_fn_data", "resampling_fn_probabilities"):
        if c.get(k, "resample_data_or_seg_to_shape") != "resample_data_or_seg_to_shape":
            raise AutosegError(f"{where}/plans.json: {k} {c[k]!r} is not supported")
    spacing = [float(s) for s in c["spacing"]]
    rd = _resampling(c["resampling_fn_data_kwargs"], spacing, f"{where}/plans.json")
    rl = {**_resampling(c["resampling_fn_seg_kwargs"], spacing, f"{where}/plans.json"), "one_hot": True}
    rp = _resampling(c["resampling_fn_probabilities_kwargs"], spacing, f"{where}/plans.json")
    arch = _architecture(c["architecture"], len(channels), len(labels), f"{where}/plans.json")
    cfg = ConfigurationPlan(
        spacing=spacing,
        patch_size=[int(p) for p in c["patch_size"]], batch_size=int(c["batch_size"]),
        median_image_size_in_voxels=[float(v) for v in c["median_image_size_in_voxels"]],
        normalization_schemes=list(c["normalization_schemes"]), use_mask_for_norm=list(c["use_mask_for_norm"]),
        resampling_data=rd, resampling_label=rl, resampling_probabilities=rp, architecture=arch,
        batch_dice=bool(c.get("batch_dice", False)),
        reasons=[f"imported from nnU-Net v2 model {where} (plans {nn_plans.get('plans_name')}, configuration "
                 f"{config})"])
    return Plans(
        plans_version=PLANS_VERSION, dataset_name=str(nn_plans.get("dataset_name", dataset_json.get("name", ""))),
        dataset_dir="", num_input_channels=len(channels), labels={str(k): int(v) for k, v in labels.items()},
        channel_names={str(k): str(v) for k, v in channels.items()}, file_ending=dataset_json["file_ending"],
        transpose_forward=list(nn_plans["transpose_forward"]), transpose_backward=list(nn_plans["transpose_backward"]),
        original_median_spacing_after_transp=list(nn_plans["original_median_spacing_after_transp"]),
        original_median_shape_after_transp=[float(v) for v in nn_plans["original_median_shape_after_transp"]],
        gpu_memory_target_gb=8.0,
        foreground_intensity_properties_per_channel=nn_plans["foreground_intensity_properties_per_channel"],
        configurations={config: cfg})


def _configuration_name(model_dir: Path, nn_plans: dict) -> str:
    """nnU-Net names the folder <Trainer>__<Plans>__<configuration>."""
    parts = model_dir.resolve().name.split("__")
    if len(parts) == 3 and parts[2] in nn_plans.get("configurations", {}):
        return parts[2]
    raise AutosegError(f"{model_dir}: expected nnU-Net's folder name <Trainer>__<Plans>__<configuration> with a "
                       f"configuration from plans.json ({sorted(nn_plans.get('configurations', {}))})")


def _fold_dirs(model_dir: Path, folds: list[str] | None, checkpoint: str) -> list[Path]:
    found = sorted(p for p in model_dir.glob("fold_*") if (p / checkpoint).is_file())
    if folds:  # literal fold names, as nnU-Net's: 'all' is its fold_all
        found = [model_dir / f"fold_{f}" for f in folds]
        missing = [str(p / checkpoint) for p in found if not (p / checkpoint).is_file()]
        if missing:
            raise AutosegError(f"{missing[0]}: not found; the folds with {checkpoint} are "
                               f"{[p.name for p in model_dir.glob('fold_*') if (p / checkpoint).is_file()]}")
    if not found:
        raise AutosegError(f"{model_dir}: no fold_*/{checkpoint}; give nnU-Net's trained model folder")
    return found


def _fold_checkpoint(path: Path, plans: Plans, config: str) -> dict:
    ckpt = load_nnunet_checkpoint(path)
    trained = (ckpt.get("init_args") or {}).get("configuration")
    if trained not in (None, config):
        raise AutosegError(f"{path}: trained for configuration {trained!r}, but the folder is {config!r}")
    arch = plans.configuration(config).architecture
    weights = convert_weights(ckpt["network_weights"], path)
    net = build_network(arch.network_class_name, dict(arch.arch_kwargs))
    ours = net.state_dict()
    if set(weights) != set(ours):
        raise AutosegError(f"{path}: parameters {sorted(set(weights) ^ set(ours))[:4]} do not match the network "
                           "in plans.json")
    bad = [k for k in ours if tuple(weights[k].shape) != tuple(ours[k].shape)]
    if bad:
        raise AutosegError(f"{path}: parameter {bad[0]} has shape {tuple(weights[bad[0]].shape)}, the plans' "
                           f"network {tuple(ours[bad[0]].shape)}")
    return {"network_weights": {k: weights[k].float().contiguous() for k in ours},
            "architecture": {"network_class_name": arch.network_class_name, "arch_kwargs": dict(arch.arch_kwargs)},
            "epoch": int(ckpt.get("current_epoch", 0)), "configuration": config, "fold": path.parent.name[5:],
            "imported_from": str(path), "trainer_name": str(ckpt.get("trainer_name", "")),
            "nnunet_mirroring_axes": _mirroring_axes(ckpt)}


def _mirroring_axes(ckpt: dict) -> list[int] | None:
    axes = ckpt.get("inference_allowed_mirroring_axes")
    return None if axes is None else [int(a) for a in axes]


def _mirroring_note(states: list[dict], dim: int) -> str | None:
    """autoseg mirrors along every axis at test time; say so when nnU-Net's trainer allowed fewer."""
    axes = {tuple(s["nnunet_mirroring_axes"]) if s["nnunet_mirroring_axes"] is not None else None for s in states}
    if axes == {tuple(range(dim))}:
        return None
    return (f"note: nnU-Net's trainer allowed test-time mirroring along axes {sorted(axes, key=str)} only; autoseg "
            "mirrors along all axes, so predict with --no-tta where nnU-Net did not mirror")


def import_nnunet_model(model_dir: str | Path, out: str | Path, folds: list[str] | None = None,
                        checkpoint: str = "checkpoint_final.pth") -> Path:
    """Write a new run folder ``out`` (built in a temporary sibling, then renamed) from nnU-Net's model folder."""
    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise AutosegError(f"{model_dir}: not a folder (give nnU-Net's <Trainer>__<Plans>__<configuration> folder)")
    if out.exists():
        raise AutosegError(f"{out}: already exists; give a new run folder")
    nn_plans, dj = load_json(model_dir / "plans.json"), load_json(model_dir / "dataset.json")
    config = _configuration_name(model_dir, nn_plans)
    try:
        plans = translate_plans(nn_plans, dj, config, model_dir)
    except (KeyError, TypeError, ValueError) as e:
        raise AutosegError(f"{model_dir}: plans.json or dataset.json lacks or garbles an entry nnU-Net v2 writes "
                           f"({type(e).__name__}: {e})") from None
    fold_dirs = _fold_dirs(model_dir, folds, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + out.name + ".", dir=out.parent))
    try:
        ws = Workspace(tmp)
        plans.save(ws.plans)
        (tmp / "nnunet_source").mkdir()
        for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, tmp / "nnunet_source" / name)
        states = []
        for fd in fold_dirs:
            states.append(_fold_checkpoint(fd / checkpoint, plans, config))
            torch.save(states[-1], _mkdir(ws.fold_dir(config, fd.name[5:])) / "checkpoint_final.pt")
        note = _mirroring_note(states, plans.configuration(config).dim)
        save_json({"configuration": config, "folds": [p.name[5:] for p in fold_dirs], "checkpoint": checkpoint,
                   "source": str(model_dir.resolve())}, tmp / "nnunet_source" / "import.json")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if note:
        print(note, flush=True)
    print(f"imported nnU-Net {config} ({len(fold_dirs)} fold(s): {[p.name for p in fold_dirs]}) from {model_dir} "
          f"-> {out}; predict with `autoseg predict {out} -i IMAGES -o OUT`", flush=True)
    return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
