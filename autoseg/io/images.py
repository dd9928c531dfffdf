"""Read and write images through SimpleITK, keeping spacing, origin and direction.

Internally every image is a numpy array in (z, y, x) order with channels first: ``(C, Z, Y, X)``. A 2D image
(PNG, or a 2D NIfTI) becomes a single slice ``(C, 1, Y, X)`` whose z spacing is a large dummy value, so the
planner treats it as 2D and never resamples across slices. A colour file (RGB, RGBA) is several channels, its
components in file order with alpha kept, as nnU-Net's natural-image reader counts them; PNG and TIFF files are
natural images whose pixel spacing is 1 (nnU-Net's convention; their dpi tags are not a physical size).
``Geometry`` remembers the original dimension, spacing, origin and direction so that a prediction is written back
exactly on the input's grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..core.errors import AutosegError
from ..core.files import atomic_write_bytes

SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".tif", ".tiff")
NATURAL_IMAGE_ENDINGS = (".png", ".tif", ".tiff")  # 2D only, pixel spacing 1, written as 8-bit
DUMMY_2D_SPACING = 999.0
MAX_SPACING_MM = 1e4  # above this a spacing is a unit or header error (nnU-Net's 2D convention uses 999)
MAX_ABS_INTENSITY = 1e12  # beyond this float32 normalisation overflows (mean/std of squares)


@dataclass(frozen=True)
class Geometry:
    """Original geometry of an image. ``spacing`` is in array order (z, y, x); the rest are SimpleITK's."""

    dimension: int
    shape: tuple[int, int, int]  # (z, y, x) of the internal array
    spacing: tuple[float, float, float]  # (z, y, x), mm
    sitk_spacing: tuple[float, ...]  # as SimpleITK reports it (x, y[, z])
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    is_png: bool = False  # a natural 2D image (PNG or TIFF): spacing 1, labels written as 8-bit

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "shape": list(self.shape), "spacing": list(self.spacing),
                "sitk_spacing": list(self.sitk_spacing), "origin": list(self.origin),
                "direction": list(self.direction), "is_png": self.is_png}

    @staticmethod
    def from_dict(d: dict) -> "Geometry":
        return Geometry(int(d["dimension"]), tuple(d["shape"]), tuple(d["spacing"]), tuple(d["sitk_spacing"]),
                        tuple(d["origin"]), tuple(d["direction"]), bool(d.get("is_png", False)))


def ending_of(path: str | Path) -> str:
    name = str(path).lower()
    for e in SUPPORTED_ENDINGS:
        if name.endswith(e):
            return e
    raise AutosegError(f"{path}: unsupported file type (supported: {', '.join(SUPPORTED_ENDINGS)})")


def _read_sitk(path: Path) -> tuple[sitk.Image, bool]:
    """The image and whether the file holds NaN/inf voxels (checked on the file for NIfTI)."""
    if not path.is_file():
        raise AutosegError(f"{path}: file not found")
    nonfinite = check_nifti_file(path) if _is_nifti(path) else False
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise AutosegError(f"{path}: cannot be read as an image ({str(e).strip().splitlines()[-1]})") from None
    _check_spacing(path, img.GetSpacing())
    if not all(np.isfinite(img.GetOrigin())) or not all(np.isfinite(img.GetDirection())):
        raise AutosegError(f"{path}: origin or direction in the header is not a finite number; fix the header")
    return img, nonfinite


def _check_spacing(path: Path, spacing) -> None:
    sp = [float(v) for v in spacing]
    if not all(np.isfinite(v) and 0 < abs(v) <= MAX_SPACING_MM for v in sp):
        raise AutosegError(f"{path}: voxel spacing {sp} mm is absurd (zero, NaN or above {MAX_SPACING_MM:g} mm); "
                           "fix the spacing in the file header")


def _scan_data(path: Path, offset: int, limit: int, dtype: np.dtype | None) -> tuple[int, bool]:
    """(bytes of file content, counted up to ``limit``; whether the voxel data holds NaN/inf), in one streaming
    pass with constant memory. ``dtype`` is the float dtype to check, or None. Raises on a corrupt gzip stream."""
    import zlib

    gz = str(path).lower().endswith(".gz")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS) if gz else None
    n, bad, pending = 0, False, b""
    with open(path, "rb") as f:
        while n < limit:
            raw = f.read(1 << 22)
            if not raw:
                if gz and not d.eof:
                    raise EOFError("compressed stream ends early")
                break
            chunk = d.decompress(raw) if gz else raw
            if dtype is not None and not bad:  # the voxel bytes of this chunk, whole items only
                lo = max(offset - n, 0)
                buf = pending + chunk[lo:min(len(chunk), limit - n)]
                whole = len(buf) - len(buf) % dtype.itemsize
                bad = not np.isfinite(np.frombuffer(buf[:whole], dtype)).all()
                pending = buf[whole:]
            n += len(chunk)
            if gz and d.eof:
                break
    return n, bad


def _raw_pixdim(path: Path) -> list[float]:
    """pixdim as stored (nibabel's loader replaces zero spacings by 1 before we could see them)."""
    import gzip
    import struct

    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(540)
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348:
            return list(struct.unpack(endian + "8f", head[76:108]))
        if size == 540:
            return list(struct.unpack(endian + "8d", head[104:168]))
    raise ValueError("no NIfTI header size (348 or 540) at the start of the file")


def check_nifti_file(path: Path) -> bool:
    """Refuse NIfTI files that are not NIfTI, truncated, or whose header spacing is zero/NaN/absurd.

    SimpleITK fills the voxels missing from a truncated file and turns a zero or NaN spacing into 1.0, so these
    are checked on the file itself: the header (read by nibabel) says how many bytes must follow it. Returns
    whether the voxel values hold NaN or inf (SimpleITK would replace them by numbers).
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        hdr = img.header
        shape = tuple(int(v) for v in hdr.get_data_shape())
        itemsize = np.dtype(hdr.get_data_dtype()).itemsize
        offset = max(int(hdr.get_data_offset()), int(hdr.sizeof_hdr) + 4)  # some writers store vox_offset 0
        pixdim = _raw_pixdim(path)[1:1 + min(len(shape), 3)]
    except Exception as e:  # nibabel raises many types for foreign bytes
        raise AutosegError(f"{path}: not a valid NIfTI file ({type(e).__name__}: {str(e)[:120]}); "
                           "re-export it as NIfTI") from None
    expected = offset + int(np.prod(shape)) * itemsize
    dtype = np.dtype(hdr.get_data_dtype())
    try:
        present, nonfinite = _scan_data(path, offset, expected, dtype if dtype.kind == "f" else None)
    except Exception as e:  # zlib.error, EOFError, OSError
        raise AutosegError(f"{path}: the file is corrupt or truncated ({str(e)[:120]}); copy it again") from None
    if present < expected:
        raise AutosegError(f"{path}: the file is truncated ({present} of {expected} bytes for a {shape} "
                           f"{hdr.get_data_dtype()} image); copy it again")
    _check_spacing(path, pixdim[:3])
    slope = hdr.get("scl_slope")
    if slope is not None and np.isfinite(slope) and slope not in (0, 1) and dtype.kind != "f":
        nonfinite = _nifti_has_nonfinite(path)  # scaled integers: rare, read whole
    return nonfinite


def _to_internal(img: sitk.Image, path: Path) -> tuple[np.ndarray, Geometry]:
    """Array of shape (C, Z, Y, X) and its geometry."""
    dim = img.GetDimension()
    is_png = is_natural_image(path)
    if is_png and dim != 2:
        raise AutosegError(f"{path}: a {dim}D {ending_of(path)} stack; PNG and TIFF files are read as 2D natural "
                           "images (as nnU-Net does); convert 3D stacks to NIfTI or MHA with their spacing")
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1:  # vector image (RGB, RGBA): components last -> channels first, alpha kept as nnU-Net keeps it
        arr = np.moveaxis(arr, -1, 0)
    else:
        arr = arr[None]
    if dim == 2:
        arr = arr[:, None]
        spacing = (DUMMY_2D_SPACING, float(img.GetSpacing()[1]), float(img.GetSpacing()[0]))
    elif dim == 3:
        s = img.GetSpacing()
        spacing = (float(s[2]), float(s[1]), float(s[0]))
    else:
        raise AutosegError(f"{path}: {dim}D images are not supported (2D or 3D only; split 4D series into 3D files)")
    if arr.size == 0:
        raise AutosegError(f"{path}: the image has no voxels (shape {arr.shape[1:]})")
    if is_png:
        spacing = (DUMMY_2D_SPACING, 1.0, 1.0)
    geom = Geometry(dim, tuple(int(v) for v in arr.shape[1:]), spacing, tuple(float(v) for v in img.GetSpacing()),
                    tuple(float(v) for v in img.GetOrigin()), tuple(float(v) for v in img.GetDirection()), is_png)
    return arr, geom


def _nifti_has_nonfinite(path: Path) -> bool:
    """SimpleITK's NIfTI reader replaces NaN voxels by numbers, so a NaN in a NIfTI file would pass unseen.
    nibabel reads the stored values; only float files (or scaled ones) can hold NaN/inf, so others cost nothing."""
    import nibabel as nib

    img = nib.load(str(path))
    hdr = img.header
    slope = hdr.get("scl_slope") if hasattr(hdr, "get") else None
    is_float = np.issubdtype(hdr.get_data_dtype(), np.floating)
    if not is_float and (slope is None or not np.isfinite(slope) or slope in (0, 1)):
        return False
    return not np.isfinite(np.asanyarray(img.dataobj)).all()


def is_natural_image(path: str | Path) -> bool:
    return str(path).lower().endswith(NATURAL_IMAGE_ENDINGS)


def _is_nifti(path: Path) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


def read_case_images(paths: Sequence[str | Path], case: str = "", num_channels: int | None = None
                     ) -> tuple[np.ndarray, Geometry]:
    """Read the image files of one case into a float32 (C, Z, Y, X) array; all channels must share a grid. A colour
    file gives several channels; ``num_channels``, when given, is the count the files must hold together."""
    arrays, geom0 = [], None
    for p in paths:
        p = Path(p)
        img, nonfinite = _read_sitk(p)
        arr, geom = _to_internal(img, p)
        del img
        if nonfinite:
            raise AutosegError(f"case {case or p.name}: image contains NaN or inf values ({p.name}); "
                               "fix or remove these voxels before planning")
        if geom0 is None:
            geom0 = geom
        elif geom.shape != geom0.shape or not np.allclose(geom.spacing, geom0.spacing, rtol=1e-3):
            raise AutosegError(f"case {case or p.name}: channel {p.name} has shape {geom.shape} spacing "
                               f"{geom.spacing}, but the first channel has {geom0.shape} {geom0.spacing}")
        arrays.append(arr.astype(np.float32, copy=False))
        del arr
    if geom0 is None:
        raise AutosegError(f"case {case}: no image files given")
    held = [a.shape[0] for a in arrays]
    if num_channels is not None and sum(held) != num_channels:
        what = ", ".join(f"{Path(p).name}: {n}" for p, n in zip(paths, held))
        raise AutosegError(f"case {case or Path(paths[0]).name}: the image files hold {sum(held)} channel(s) "
                           f"({what}), but {num_channels} are expected; give one file per channel, or one colour file "
                           "holding all of them (RGBA counts alpha as a channel)")
    data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, 0)  # one channel: no second copy
    del arrays
    if not np.isfinite(data).all():
        raise AutosegError(f"case {case or Path(paths[0]).name}: image contains NaN or inf values; "
                           "fix or remove these voxels before planning")
    peak = max(float(data.max()), -float(data.min())) if data.size else 0.0
    if peak > MAX_ABS_INTENSITY:
        raise AutosegError(f"case {case or Path(paths[0]).name}: intensities up to {peak:.3g} "
                           f"exceed {MAX_ABS_INTENSITY:g} and cannot be normalised in float32; rescale the image")
    return data, geom0


def read_label(path: str | Path, case: str = "") -> tuple[np.ndarray, Geometry]:
    """Read a label map into an int16 (Z, Y, X) array."""
    path = Path(path)
    img, nonfinite = _read_sitk(path)
    if img.GetNumberOfComponentsPerPixel() > 1:
        if is_natural_image(path):  # RGB PNG/TIFF label with equal channels
            img = sitk.VectorIndexSelectionCast(img, 0)
        else:
            raise AutosegError(f"case {case or path.name}: label file {path} has several components per voxel")
    arr, geom = _to_internal(img, path)
    lab = arr[0]
    if nonfinite or not np.isfinite(lab).all():
        raise AutosegError(f"case {case or path.name}: label file {path} contains NaN or inf")
    if np.issubdtype(lab.dtype, np.floating):
        if not np.all(lab == np.round(lab)):
            raise AutosegError(f"case {case or path.name}: label file {path} holds non-integer values")
    return lab.astype(np.int16), geom


def _write_sitk(arr: np.ndarray, geom: Geometry, path: Path) -> None:
    img = sitk.GetImageFromArray(arr[0] if geom.dimension == 2 else arr)
    img.SetSpacing(geom.sitk_spacing)
    img.SetOrigin(geom.origin)
    img.SetDirection(geom.direction)
    # SimpleITK picks the writer from the file name, so the temporary file keeps the real ending
    atomic_write_bytes(path, lambda tmp: sitk.WriteImage(img, tmp, useCompression=True), suffix=ending_of(path))


def write_label(seg: np.ndarray, geom: Geometry, path: str | Path) -> None:
    """Write a (Z, Y, X) label map with the exact geometry of the image it was predicted from."""
    path = Path(path)
    if tuple(seg.shape) != tuple(geom.shape):
        raise AutosegError(f"{path}: segmentation shape {seg.shape} does not match the image grid {geom.shape}")
    dtype = np.uint8 if (seg.min() >= 0 and seg.max() < 256) else np.int16
    _write_sitk(seg.astype(dtype), geom, path)


def write_image(data: np.ndarray, geom: Geometry, path: str | Path) -> None:
    """Write a single-channel (Z, Y, X) image with the given geometry (PNG/TIFF as 8-bit, others as float32)."""
    path = Path(path)
    dtype = np.uint8 if is_natural_image(path) else np.float32
    _write_sitk(data.astype(dtype), geom, path)
