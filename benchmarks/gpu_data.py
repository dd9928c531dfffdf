"""Carry a dataset folder to the GPU machine in as few bytes as possible, losslessly (benchmarks/gpu_prepare.sh).

    python benchmarks/gpu_data.py pack SRC_DIR OUT.tar      # here: every image slice as lossless JPEG 2000
    python benchmarks/gpu_data.py unpack OUT.tar DST_DIR    # there: the same .nii.gz files, byte for byte inside

The ACDC images are integer MRI in int16 NIfTI; gzip keeps them at 52 MB, xz -9 at about 41 MB, and lossless
JPEG 2000 (reversible 5/3 wavelet, Pillow's OpenJPEG) at about 33 MB: the difference decides whether the fold fits
beside SimpleITK in the device's 64 MiB. A NIfTI image is kept as its header bytes plus one JPEG 2000 code stream
per slice, and rebuilt as header + the decoded voxels, so the uncompressed file is identical (``pack`` checks this
for every image before writing). Anything else (labels, dataset.json, cases.csv) travels as it is. Needs only
numpy and Pillow, which the GPU machine has; SimpleITK is not needed to rebuild the files.
"""
from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

NIFTI_TYPES = {4: np.int16, 512: np.uint16, 2: np.uint8}  # the integer types JPEG 2000 takes losslessly here


def _header(nii: bytes) -> tuple[int, tuple[int, ...], type] | None:
    """(voxel offset, numpy shape (z, y, x), dtype) of a NIfTI-1 image whose voxels can go to JPEG 2000, else None."""
    if len(nii) < 352 or int.from_bytes(nii[:4], "little") != 348:
        return None
    dim = np.frombuffer(nii[40:56], dtype="<i2")
    code = int(np.frombuffer(nii[70:72], dtype="<i2")[0])
    offset = int(np.frombuffer(nii[108:112], dtype="<f4")[0])
    if code not in NIFTI_TYPES or dim[0] not in (2, 3):
        return None
    shape = tuple(int(d) for d in dim[1:dim[0] + 1][::-1])
    if len(shape) == 2:
        shape = (1,) + shape
    return offset, shape, NIFTI_TYPES[code]


def encode(nii: bytes) -> bytes | None:
    """Header + per-slice JPEG 2000 code streams (length-prefixed), or None when the image is not of that kind."""
    h = _header(nii)
    if h is None:
        return None
    offset, shape, dtype = h
    vox = np.frombuffer(nii[offset:offset + int(np.prod(shape)) * np.dtype(dtype).itemsize], dtype="<" +
                        np.dtype(dtype).str[1:]).reshape(shape)
    if dtype == np.int16 and vox.min() < 0:
        return None  # JPEG 2000 in Pillow is unsigned; a negative image travels as it is
    out = io.BytesIO()
    meta = json.dumps({"offset": offset, "shape": shape, "dtype": np.dtype(dtype).str, "tail": len(nii) - offset -
                       vox.nbytes}).encode()
    out.write(len(meta).to_bytes(4, "little") + meta + nii[:offset] + nii[offset + vox.nbytes:])
    for s in vox:
        b = io.BytesIO()
        Image.fromarray(s.astype(np.uint16)).save(b, format="JPEG2000", irreversible=False, no_jp2=True)
        out.write(b.tell().to_bytes(4, "little") + b.getvalue())
    return out.getvalue()


def decode(blob: bytes) -> bytes:
    n = int.from_bytes(blob[:4], "little")
    meta = json.loads(blob[4:4 + n])
    pos = 4 + n
    head = blob[pos:pos + meta["offset"]]
    pos += meta["offset"]
    tail = blob[pos:pos + meta["tail"]]
    pos += meta["tail"]
    slices = []
    for _ in range(meta["shape"][0]):
        m = int.from_bytes(blob[pos:pos + 4], "little")
        slices.append(np.array(Image.open(io.BytesIO(blob[pos + 4:pos + 4 + m]))))
        pos += 4 + m
    vox = np.stack(slices).astype(meta["dtype"])
    return head + vox.tobytes() + tail


def pack(src: Path, out: Path) -> None:
    """Every file under src (links followed) into the tar out; .nii.gz images as .nii.j2k when that is lossless."""
    kept = saved = 0
    with tarfile.open(out, "w") as tar:
        for f in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = f.relative_to(src).as_posix()
            data = f.read_bytes()
            if rel.endswith(".nii.gz"):
                nii = gzip.decompress(data)
                blob = encode(nii)
                if blob is not None:
                    if decode(blob) != nii:
                        raise SystemExit(f"gpu_data: {f}: the JPEG 2000 round trip is not exact; carry it as it is")
                    saved += len(data) - len(blob)
                    rel, data = rel[:-len(".gz")] + ".j2k", blob
            kept += len(data)
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    print(f"gpu_data: {out}: {kept / 2**20:.1f} MiB ({saved / 2**20:.1f} MiB less than the gzip files)")


def unpack(tar_path: Path, dst: Path) -> None:
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            data = tar.extractfile(m).read()
            name = m.name
            if name.endswith(".nii.j2k"):
                data = gzip.compress(decode(data), compresslevel=1)
                name = name[:-len(".j2k")] + ".gz"
            p = dst / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    (pack if cmd == "pack" else unpack)(Path(a), Path(b))
