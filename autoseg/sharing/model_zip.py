"""Trained models as one zip file: export a run's inference files, and read such a zip back safely.

A model zip holds what prediction needs and nothing of the training data: plans.json, dataset.json (names of
channels and labels), fingerprint.json, for each exported configuration the chosen folds' final checkpoints,
postprocessing.json and cv_summary.json, best.json, and manifest.json (autoseg, torch and Python versions and the
SHA-256 of every other file). Reading refuses members that would land outside the extraction folder (absolute
paths, ``..``, drive letters, symbolic links), unlisted files and files whose checksum differs, so a zip from
someone else can only ever write the files its manifest names, inside the folder it is extracted to.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes
from ..core.jsonio import load_json
from ..core.version import __version__
from ..io.workspace import Workspace

MANIFEST = "manifest.json"
FORMAT = "autoseg-model"
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint_final.pt"
FOLD_FILES = (CHECKPOINT, "config.json")
CONFIG_FILES = ("postprocessing.json", "cv_summary.json")
MAX_UNCOMPRESSED = 4 << 30  # 4 GiB: far above any U-Net checkpoint set, far below a zip bomb's claim


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _trained_folds(ws: Workspace, config: str) -> list[str]:
    return sorted(p.name[5:] for p in ws.config_dir(config).glob("fold_*") if (p / CHECKPOINT).is_file())


def _default_configurations(ws: Workspace) -> list[str]:
    from ..postprocessing.best import read_best

    best = read_best(ws)
    chosen = best["configurations"] if best else []
    if chosen and all(_trained_folds(ws, c) for c in chosen):
        return list(chosen)  # an ensemble's members all travel
    trained = sorted(p.parent.parent.name for p in ws.root.glob(f"*/fold_*/{CHECKPOINT}"))
    if not trained:
        raise AutosegError(f"{ws.root}: no trained fold (no */fold_*/{CHECKPOINT}); run `autoseg train` first")
    return sorted(set(trained))


def _dataset_json(ws: Workspace) -> dict:
    """Names of channels and labels for the people who use the model (from the plans; the dataset may be gone)."""
    plans = load_json(ws.plans)
    return {"name": plans["dataset_name"], "channel_names": plans["channel_names"], "labels": plans["labels"],
            "file_ending": plans["file_ending"]}


def export_files(run_dir: str | Path, configurations: list[str] | None = None,
                 folds: list[str] | None = None) -> dict[str, Path]:
    """{name in the zip: file in the run} for the chosen configurations and folds (default: best or all trained)."""
    ws = Workspace.at(run_dir).require_plans()
    configs = configurations or _default_configurations(ws)
    files = {"plans.json": ws.plans}
    if ws.fingerprint.is_file():
        files["fingerprint.json"] = ws.fingerprint
    from ..postprocessing.best import read_best

    best = read_best(ws)
    if best and set(best["configurations"]) <= set(configs):
        files["best.json"] = ws.best
    for c in configs:
        _add_configuration(ws, c, folds, files)
    for c in _previous_stages(ws, configs):  # the cascade predicts with its first stage: all its trained folds
        _add_configuration(ws, c, None, files)
    return files


def _previous_stages(ws: Workspace, configs: list[str]) -> list[str]:
    plans = load_json(ws.plans).get("configurations", {})
    prev = [plans.get(c, {}).get("previous_stage") for c in configs]
    return sorted({p for p in prev if isinstance(p, str) and p not in configs})


def _add_configuration(ws: Workspace, c: str, folds: list[str] | None, files: dict[str, Path]) -> None:
    trained = _trained_folds(ws, c)
    chosen = trained if not folds or folds == ["all"] else [str(f) for f in folds]
    missing = [f for f in chosen if f not in trained]
    if not trained or missing:
        raise AutosegError(f"{ws.config_dir(c)}: no {CHECKPOINT} for fold(s) {missing or chosen}; trained: "
                           f"{trained or 'none'}")
    for f in chosen:
        for name in FOLD_FILES:
            if (ws.fold_dir(c, f) / name).is_file():
                files[f"{c}/fold_{f}/{name}"] = ws.fold_dir(c, f) / name
    for name in CONFIG_FILES:
        if (ws.config_dir(c) / name).is_file():
            files[f"{c}/{name}"] = ws.config_dir(c) / name


def export_model(run_dir: str | Path, out_zip: str | Path, configurations: list[str] | None = None,
                 folds: list[str] | None = None, onnx: bool = False) -> Path:
    """Write MODEL.zip (atomically) with the inference files of a run and a manifest of versions and checksums;
    with ``onnx`` also each fold's network as ``network.onnx`` (for the onnxruntime backend)."""
    import torch

    out_zip = Path(out_zip)
    if out_zip.suffix.lower() != ".zip":
        raise AutosegError(f"{out_zip}: the model file must end in .zip")
    ws = Workspace.at(run_dir)
    files = export_files(run_dir, configurations, folds)
    configs = sorted({n.split("/")[0] for n in files if "/" in n})
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "autoseg_version": __version__,
                "torch_version": torch.__version__, "python_version": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source_run": ws.root.name,
                "configurations": {c: sorted(n.split("/")[1][5:] for n in files
                                             if n.startswith(c + "/fold_") and n.endswith(CHECKPOINT))
                                   for c in configs},
                "onnx": onnx, "files": {}}
    dataset_json = (json.dumps(_dataset_json(ws), indent=2) + "\n").encode()
    with tempfile.TemporaryDirectory(prefix="autoseg_export_") as tmp_dir:
        if onnx:
            files.update(_onnx_files(ws, files, Path(tmp_dir)))
        manifest["files"]["dataset.json"] = hashlib.sha256(dataset_json).hexdigest()
        for name, path in files.items():
            manifest["files"][name] = sha256_of(path)

        def _write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
                z.writestr("dataset.json", dataset_json)
                for name, path in files.items():
                    z.write(path, name)

        atomic_write_bytes(out_zip, _write, suffix=".zip")
    return out_zip


def _onnx_files(ws: Workspace, files: dict[str, Path], tmp_dir: Path) -> dict[str, Path]:
    """{'<config>/fold_<k>/network.onnx': file} for every exported checkpoint."""
    from ..networks.checkpoint import load_checkpoint
    from ..planner.plans import Plans
    from .onnx_export import ONNX_NAME, export_network_onnx

    plans = Plans.load(ws.plans)
    out = {}
    for name, path in files.items():
        if name.endswith("/" + CHECKPOINT):
            onnx_name = name[: -len(CHECKPOINT)] + ONNX_NAME
            target = tmp_dir / onnx_name
            target.parent.mkdir(parents=True, exist_ok=True)
            export_network_onnx(load_checkpoint(path), plans.configuration(name.split("/")[0]).patch_size, target)
            out[onnx_name] = target
    return out


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if "\\" in name:
        return "has a backslash in its path (an absolute or parent path on Windows)"
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts) or not parts:
        return "has '..' or an empty part in its path"
    return None


def check_members(zf: zipfile.ZipFile, zip_path: Path) -> dict:
    """Refuse members outside the root, links and unlisted files; return the manifest."""
    infos = zf.infolist()
    for info in infos:
        why = _unsafe_reason(info)
        if why:
            raise AutosegError(f"{zip_path}: refused: member {info.filename!r} {why} (a model zip may only hold "
                               "plain files inside its own folder)")
    names = [i.filename for i in infos if not i.is_dir()]
    if len(set(names)) != len(names):
        raise AutosegError(f"{zip_path}: refused: a member name appears twice")
    if sum(i.file_size for i in infos) > MAX_UNCOMPRESSED:
        raise AutosegError(f"{zip_path}: refused: it would unpack to more than {MAX_UNCOMPRESSED >> 30} GiB")
    if MANIFEST not in names:
        raise AutosegError(f"{zip_path}: not an autoseg model (no {MANIFEST}); make one with `autoseg export`")
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except (ValueError, UnicodeDecodeError) as e:
        raise AutosegError(f"{zip_path}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AutosegError(f"{zip_path}: {MANIFEST} does not describe an autoseg model")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise AutosegError(f"{zip_path}: model format version {manifest.get('format_version')} is not supported "
                           f"by autoseg {__version__} (reads {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise AutosegError(f"{zip_path}: {MANIFEST} has no 'files' object of name -> SHA-256")
    unlisted = sorted(set(names) - set(files) - {MANIFEST})
    if unlisted:
        raise AutosegError(f"{zip_path}: refused: member(s) {unlisted[:3]} are not listed in {MANIFEST}")
    return manifest


def extract_model(zip_path: str | Path, dest: str | Path) -> Path:
    """Check and unpack a model zip into the new folder ``dest`` (made via a temporary sibling, then renamed)."""
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise AutosegError(f"{zip_path}: model file not found")
    if dest.exists():
        raise AutosegError(f"{dest}: already exists; give a new folder to unpack the model into")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise AutosegError(f"{zip_path}: not a readable zip file ({e})") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + dest.name + ".", dir=dest.parent))
    try:
        with zf:
            manifest = check_members(zf, zip_path)
            for name, digest in manifest["files"].items():
                _extract_one(zf, zip_path, name, digest, tmp)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _extract_one(zf: zipfile.ZipFile, zip_path: Path, name: str, digest: str, root: Path) -> None:
    if _unsafe_reason(zipfile.ZipInfo(name)):
        raise AutosegError(f"{zip_path}: refused: {MANIFEST} lists {name!r}, a path outside the model folder")
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise AutosegError(f"{zip_path}: {MANIFEST} lists {name}, which the zip does not hold") from None
    target = root.joinpath(*PurePosixPath(name).parts)
    if root.resolve() not in target.resolve().parents:
        raise AutosegError(f"{zip_path}: refused: member {name!r} resolves outside the model folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with zf.open(info) as src, open(target, "xb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            h.update(block)
            dst.write(block)
    if h.hexdigest() != digest:
        raise AutosegError(f"{zip_path}: {name} does not match its SHA-256 in {MANIFEST} (damaged or altered)")


@contextlib.contextmanager
def extracted_model(zip_path: str | Path) -> Iterator[Path]:
    """Unpack a model zip into a private temporary folder for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="autoseg_model_") as tmp:
        yield extract_model(zip_path, Path(tmp) / "model")


def is_model_zip(path: str | Path) -> bool:
    return str(path).lower().endswith(".zip") and Path(path).is_file()
