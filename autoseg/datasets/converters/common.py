"""What every converter shares: the output folder protocol, config-file parsing, header checks, cases.csv.

A conversion is built in a temporary sibling of ``--out`` and renamed onto it when complete, with
``conversion.json`` (converter, source folder, version) inside; so ``--out`` is either absent, or a finished
conversion. Running the same conversion again finds it finished and does nothing; any other non-empty ``--out``
is refused. The raw folder is only read.
"""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import SimpleITK as sitk

from ...core.errors import AutosegError
from ...core.files import atomic_write_bytes
from ...core.jsonio import load_json, save_json
from ...core.version import __version__

MARKER = "conversion.json"


def parse_cfg(path: Path, required: tuple[str, ...]) -> dict[str, str]:
    """``Key: value`` lines (ACDC Info.cfg, CAMUS Info_*.cfg); the required keys must be present."""
    if not path.is_file():
        raise AutosegError(f"{path}: not found")
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            values[k.strip()] = v.strip()
    missing = [k for k in required if k not in values]
    if missing:
        raise AutosegError(f"{path}: no {', '.join(repr(k + ':') for k in missing)} line")
    return values


def cfg_int(values: dict[str, str], key: str, path: Path) -> int:
    try:
        return int(float(values[key]))
    except ValueError:
        raise AutosegError(f"{path}: {key} {values[key]!r} is not a frame number") from None


def read_header(path: Path) -> sitk.ImageFileReader:
    """The image header only (size, spacing, origin, direction), with a clear error for a missing or bad file."""
    if not path.is_file():
        raise AutosegError(f"{path}: not found")
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError as e:
        raise AutosegError(f"{path}: cannot be read as an image ({str(e).strip().splitlines()[-1]})") from None
    return r


def check_label_fits_image(image: Path, label: Path) -> None:
    """A converted label is read voxel for voxel against its image, so their sizes must agree (headers only)."""
    a, b = read_header(image), read_header(label)
    if a.GetSize() != b.GetSize():
        raise AutosegError(f"{label}: size {b.GetSize()} differs from its image {image.name} {a.GetSize()}")


def copy_file(src: Path, dst: Path) -> None:
    """Byte copy: the converted file keeps the source's header, hence its exact geometry."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def find_image(folder: Path, stem: str, endings: tuple[str, ...] = (".nii.gz", ".mhd")) -> Path:
    """``folder/stem + ending`` for the first ending present (public releases differ: CAMUS 2019 used .mhd)."""
    for e in endings:
        if (folder / (stem + e)).is_file():
            return folder / (stem + e)
    raise AutosegError(f"{folder / (stem + endings[0])}: not found" + (f" (nor {stem}{endings[1]})"
                                                                        if len(endings) > 1 else ""))


def copy_as_nifti(src: Path, dst: Path) -> None:
    """A byte copy of a .nii.gz; other formats are rewritten as .nii.gz by SimpleITK with the same geometry."""
    if src.name.endswith(".nii.gz"):
        copy_file(src, dst)
        return
    read_header(src)  # a clear error for a bad file
    img = sitk.ReadImage(str(src))
    atomic_write_bytes(dst, lambda tmp: sitk.WriteImage(img, tmp, useCompression=True), suffix=".nii.gz")


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _finished_same(out: Path, kind: str, source: Path) -> bool:
    marker = out / MARKER
    if not marker.is_file():
        return False
    m = load_json(marker)
    return m.get("converter") == kind and m.get("source") == str(source)


def write_conversion(kind: str, raw_dir: str | Path, out: str | Path,
                     build: Callable[[Path, Path, str], int]) -> Path:
    """Run ``build(raw, tmp, name) -> number of cases`` into a temporary folder and rename it onto ``out``."""
    raw, out = Path(raw_dir).resolve(), Path(out).resolve()
    if not raw.is_dir():
        raise AutosegError(f"{raw}: raw dataset folder not found")
    if out == raw or raw in out.parents:
        raise AutosegError(f"{out}: the output must lie outside the raw folder {raw} (which is never modified)")
    if out.exists():
        if _finished_same(out, kind, raw):
            print(f"{out}: already a finished {kind} conversion of {raw}; nothing to do", flush=True)
            return out
        if not out.is_dir() or any(out.iterdir()):
            raise AutosegError(f"{out}: exists and is not empty (nor a finished {kind} conversion of {raw}); "
                               "give a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + out.name + ".", dir=out.parent))
    try:
        n = build(raw, tmp, dataset_name(out, kind.upper()))
        save_json({"converter": kind, "source": str(raw), "cases": n, "autoseg_version": __version__},
                  tmp / MARKER)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{kind}: {n} cases from {raw} -> {out}; check it with `autoseg verify {out}`", flush=True)
    return out


def dataset_name(out: Path, default: str) -> str:
    """'DatasetNNN_Name' -> 'Name' (nnU-Net's folder convention); otherwise the default."""
    parts = out.name.split("_", 1)
    return parts[1] if len(parts) == 2 and parts[0].startswith("Dataset") else default
