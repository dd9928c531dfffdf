"""A Medical Segmentation Decathlon task (``TaskNN_Name/``) -> nnU-Net v2 raw layout.

MSD stores every channel of a case in one 4D NIfTI (x, y, z, channel) and an nnU-Net v1 dataset.json
(``modality`` {"0": "FLAIR", ...}, ``labels`` {"0": "background", "1": "edema"}, ``training`` and ``test`` lists).
The channels are split into ``<case>_0000.nii.gz`` .. ``<case>_000N.nii.gz`` with the spatial geometry of the 4D
file; 3D images and labels are byte copies; dataset.json becomes v2 (``channel_names``, labels name -> value).
macOS ``._`` files in the archives are ignored.
"""
from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from ...core.errors import AutosegError
from ...core.files import atomic_write_bytes
from ...core.jsonio import load_json, save_json
from .common import copy_file, read_header


def _case_of(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def split_channels(src: Path, dst_dir: Path, case: str, n_channels: int) -> None:
    """Write channel c of ``src`` to ``dst_dir/<case>_<c:04d>.nii.gz`` (a byte copy when ``src`` is 3D)."""
    dim = read_header(src).GetDimension()
    if dim == 3 and n_channels == 1:
        copy_file(src, dst_dir / f"{case}_0000.nii.gz")
        return
    img = sitk.ReadImage(str(src))
    if dim != 4 or img.GetSize()[3] != n_channels:
        raise AutosegError(f"{src}: has size {img.GetSize()}, but dataset.json names {n_channels} modalities "
                           f"(expected a 4D image with {n_channels} channels last)")
    size = list(img.GetSize()[:3]) + [0]
    for c in range(n_channels):
        ch = sitk.Extract(img, size, [0, 0, 0, c], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
        dst = dst_dir / f"{case}_{c:04d}.nii.gz"
        atomic_write_bytes(dst, lambda tmp, ch=ch: sitk.WriteImage(ch, tmp, useCompression=True), suffix=".nii.gz")


def _v2_dataset_json(dj: dict, where: Path, name: str, n_train: int) -> dict:
    modality = dj.get("modality") or dj.get("channel_names")
    labels = dj.get("labels")
    if not isinstance(modality, dict) or not isinstance(labels, dict):
        raise AutosegError(f"{where}: needs 'modality' and 'labels' objects (MSD's dataset.json)")
    try:
        inverted = {str(v): int(k) for k, v in labels.items()}
    except ValueError:
        raise AutosegError(f"{where}: 'labels' keys must be the label values ('0', '1', ...)") from None
    if len(inverted) != len(labels):
        raise AutosegError(f"{where}: two labels share a name")
    channels = {str(k): str(v) for k, v in sorted(modality.items(), key=lambda t: int(t[0]))}
    return {"name": name, "channel_names": channels,
            "labels": dict(sorted(inverted.items(), key=lambda t: t[1])), "numTraining": n_train,
            "file_ending": ".nii.gz", "description": str(dj.get("description", "")),
            "reference": str(dj.get("reference", "")), "licence": str(dj.get("licence", ""))}


def _listed(raw: Path, entry: str) -> Path:
    rel = Path(entry)
    if rel.is_absolute() or ".." in rel.parts:
        raise AutosegError(f"{raw / 'dataset.json'}: entry {entry!r} points outside the task folder")
    return raw / rel


def build(raw: Path, out: Path, name: str) -> int:
    dj_path = raw / "dataset.json"
    dj = load_json(dj_path)
    training, test = dj.get("training"), dj.get("test", [])
    if not isinstance(training, list) or not training:
        raise AutosegError(f"{dj_path}: no 'training' list of {{'image': ..., 'label': ...}} entries")
    n_ch = len(dj.get("modality") or {})
    v2 = _v2_dataset_json(dj, dj_path, name, len(training))
    for entry in training:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise AutosegError(f"{dj_path}: training entry {entry!r} needs 'image' and 'label'")
        image, label = _listed(raw, entry["image"]), _listed(raw, entry["label"])
        check_same_grid_spatial(image, label)
        case = _case_of(image)
        split_channels(image, out / "imagesTr", case, n_ch)
        copy_file(label, out / "labelsTr" / f"{case}.nii.gz")
    for entry in test:
        image = _listed(raw, entry if isinstance(entry, str) else entry.get("image", ""))
        split_channels(image, out / "imagesTs", _case_of(image), n_ch)
    save_json(v2, out / "dataset.json")
    return len(training) + len(test)


def check_same_grid_spatial(image: Path, label: Path) -> None:
    """A 4D image's first three axes must match the 3D label."""
    a, b = read_header(image), read_header(label)
    if tuple(a.GetSize()[:3]) != tuple(b.GetSize()[:3]):
        raise AutosegError(f"{label}: size {b.GetSize()} differs from its image {image.name} {a.GetSize()[:3]}")


__all__ = ["build", "split_channels"]
