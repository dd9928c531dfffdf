"""Seeded family of small datasets that covers the space the planners act on.

Two kinds:
- "files": real image files of modest size; both tools extract the fingerprint from them themselves (this checks
  fingerprint extraction too: spacings, shapes after cropping, crop ratio, foreground intensities).
- "fingerprint": tiny image files (so that both tools accept the folder and pick the same reader) plus a synthetic
  nnU-Net-format fingerprint (dataset_fingerprint.json) that both planners consume. This reaches very large images
  (1024x1280 2D, 512x512x600 CT) without writing large files.

Every spacing and shape is in array order (z, y, x). ``generate(root, seed)`` writes nnU-Net's raw layout,
``root/raw/DatasetNNN_<name>/``, and returns the list of specs.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FIRST_ID = 700
NAME_POOL = ["CT", "ct", " CT", "T2", "FLAIR", "noNorm", "none", "rgb", "rgb_to_0_1", "rescale_to_0_1", "zscore",
             "cine MRI", "ADC", "NONORM", "Ct"]


@dataclass
class Spec:
    name: str
    kind: str  # "files" or "fingerprint"
    file_ending: str
    channel_names: list[str]
    n_labels: int  # foreground classes
    spacings: list[list[float]]  # per case, array order
    shapes: list[list[int]]  # per case: image shape for "files", shape after crop for "fingerprint"
    relative_size_after_crop: float = 1.0  # "fingerprint" only
    sparse: bool = False  # "files": foreground of a few voxels
    border: int = 0  # "files": zero border (makes cropping matter)
    extra: dict = field(default_factory=dict)


def _jitter(rng, base, n, rel, integer=False, lo=None):
    out = []
    for _ in range(n):
        v = np.asarray(base, float) * (1 + rng.uniform(-rel, rel, len(base)))
        if integer:
            v = np.maximum(np.round(v), 1 if lo is None else lo).astype(int).tolist()
        else:
            v = [round(float(x), 4) for x in v]
        out.append(v)
    return out


def _fp_spec(rng, name, spacing, shape, n, channels, n_labels=2, sj=0.1, shj=0.15, rel=1.0, two_d=False,
             file_ending=".nii.gz", exact=False):
    """A planning-only dataset around a base spacing and (after-crop) shape."""
    if exact:
        spacings = [list(map(float, spacing))] * n
        shapes = [list(map(int, shape))] * n
    else:
        spacings = _jitter(rng, spacing, n, sj)
        shapes = _jitter(rng, shape, n, shj, integer=True, lo=2)
    if two_d:
        spacings = [[999.0] + s[1:] for s in spacings]
    if two_d or shape[0] == 1:
        shapes = [[1] + s[1:] for s in shapes]
    return Spec(name, "fingerprint", file_ending, channels, n_labels, spacings, shapes, rel)


def _file_spec(rng, name, spacing, shape, n, channels, ending, n_labels=2, sparse=False, border=0, sj=0.1, shj=0.1):
    spacings = [[999.0] + list(spacing[1:]) if ending == ".png" else s for s in _jitter(rng, spacing, n, sj)]
    if ending == ".png":
        spacings = [[999.0, 1.0, 1.0]] * n
    shapes = _jitter(rng, shape, n, shj, integer=True, lo=4)
    if shape[0] == 1:
        shapes = [[1] + s[1:] for s in shapes]
    return Spec(name, "files", ending, channels, n_labels, spacings, shapes, sparse=sparse, border=border)


def make_specs(seed: int = 0) -> list[Spec]:
    rng = np.random.default_rng(seed)
    S: list[Spec] = []
    # --- fingerprint-only, hand-picked corners of the space ---
    S += [
        _fp_spec(rng, "ct_iso_large", [1, 0.8, 0.8], [300, 512, 512], 31, ["CT"], 3),
        _fp_spec(rng, "ct_iso_huge", [0.8, 0.8, 0.8], [600, 512, 512], 20, ["CT"], 1),
        _fp_spec(rng, "ct_square_exact", [1.0, 0.7, 0.7], [400, 512, 512], 10, ["CT"], 2, exact=True),
        _fp_spec(rng, "mr_aniso_first_few", [8, 1.2, 1.2], [12, 256, 256], 24, ["T2"], 3),
        _fp_spec(rng, "mr_aniso_first_many", [5, 0.9, 0.9], [120, 256, 256], 15, ["T2"], 2),
        _fp_spec(rng, "mr_aniso_last_few", [1.0, 1.0, 7], [240, 200, 14], 16, ["cine MRI"], 2),
        _fp_spec(rng, "mr_aniso_middle_few", [0.9, 6, 0.9], [220, 18, 230], 13, ["FLAIR"], 2),
        _fp_spec(rng, "nonsquare_inplane_4mm", [4, 0.9, 1.5], [20, 300, 180], 18, ["T2"], 2, sj=0.05),
        _fp_spec(rng, "nonsquare_inplane_5mm", [5, 0.9, 1.5], [20, 300, 180], 11, ["ADC"], 2, sj=0.05),
        _fp_spec(rng, "nonsquare_iso_ish", [1.2, 0.6, 1.0], [150, 300, 180], 14, ["ct"], 2),
        _fp_spec(rng, "half_voxel_even", [1, 1, 1], [33, 65, 47], 4, ["T2"], 1, exact=False, sj=0.0, shj=0.3),
        _fp_spec(rng, "lowres_borderline", [1, 1, 1], [190, 190, 190], 20, ["CT"], 2, sj=0.02, shj=0.05),
        _fp_spec(rng, "lowres_just_over", [1, 1, 1], [260, 240, 240], 12, ["CT"], 2, sj=0.02, shj=0.05),
        _fp_spec(rng, "brain_masked", [1, 1, 1], [140, 170, 140], 25, ["T1", "T1ce", "FLAIR"], 3, rel=0.55),
        _fp_spec(rng, "brain_masked_ct_mix", [1, 1, 1], [140, 170, 140], 9, ["CT", "T2"], 2, rel=0.6),
        _fp_spec(rng, "tiny_dataset_2cases", [1, 1, 1], [64, 64, 64], 2, ["T2"], 1),
        _fp_spec(rng, "tiny_images", [2, 2, 2], [20, 24, 18], 40, ["T2"], 4),
        _fp_spec(rng, "one_case", [3, 0.7, 0.7], [30, 400, 400], 1, ["CT"], 2, exact=True),
        _fp_spec(rng, "2d_large_1024x1280", [999, 1, 1], [1, 1024, 1280], 30, ["noNorm"], 1, two_d=True,
                 file_ending=".png", sj=0, shj=0.05),
        _fp_spec(rng, "2d_huge_2048", [999, 0.5, 0.5], [1, 2048, 2300], 8, ["rgb_to_0_1", "rgb_to_0_1",
                 "rgb_to_0_1"], 2, two_d=True, file_ending=".png", sj=0, shj=0.05),
        _fp_spec(rng, "2d_small_even", [999, 1, 1], [1, 61, 75], 20, ["rgb"], 1, two_d=True, file_ending=".png",
                 sj=0, shj=0.2),
        _fp_spec(rng, "2d_nonsquare_spacing", [999, 0.4, 0.9], [1, 500, 300], 17, ["rescale_to_0_1"], 2,
                 two_d=True),
        _fp_spec(rng, "2d_mha_names", [999, 0.8, 0.8], [1, 700, 600], 9, [" CT", "none"], 2, two_d=True,
                 file_ending=".mha"),
        _fp_spec(rng, "2d_nii_thin_z", [0.3, 0.5, 0.9], [1, 400, 300], 7, ["T2"], 1),
        _fp_spec(rng, "thick_ct_aniso_last", [0.75, 0.75, 5.0], [512, 512, 60], 22, ["Ct"], 5, sj=0.05),
        _fp_spec(rng, "mild_aniso_2p5", [2.5, 1, 1], [80, 200, 200], 10, ["T2"], 2),
        _fp_spec(rng, "aniso_many_voxels", [4, 1, 1], [200, 256, 256], 12, ["NONORM"], 2),
    ]
    # --- fingerprint-only, drawn at random ---
    for i in range(10):
        dim3 = rng.random() < 0.7
        base_sp = rng.choice([0.5, 0.8, 1.0, 1.5])
        sp = [float(base_sp * rng.choice([1, 1, 1, 2.5, 4, 6])), float(base_sp),
              float(base_sp * rng.choice([1, 1, 1.6]))]
        sp = list(rng.permutation(sp)) if rng.random() < 0.5 else sp
        shape = [int(rng.integers(8, 400)), int(rng.integers(48, 600)), int(rng.integers(48, 600))]
        nch = int(rng.integers(1, 4))
        names = [str(rng.choice(NAME_POOL)) for _ in range(nch)]
        n = int(rng.integers(1, 60))
        S.append(_fp_spec(rng, f"random_{i}", sp, shape, n, names, int(rng.integers(1, 5)), two_d=not dim3,
                          rel=float(rng.choice([1.0, 0.9, 0.6])), file_ending=str(rng.choice([".nii.gz", ".mha"]))))
    # --- real files: both tools fingerprint them ---
    S += [
        _file_spec(rng, "files_iso_nii", [1, 1, 1], [40, 48, 44], 5, ["CT"], ".nii.gz", 2, border=4),
        _file_spec(rng, "files_aniso_first_nii", [6, 1, 1], [8, 64, 56], 6, ["T2"], ".nii.gz", 3, border=6),
        _file_spec(rng, "files_aniso_last_mha", [0.9, 0.9, 5], [60, 52, 9], 7, ["FLAIR", "T1"], ".mha", 2, border=5),
        _file_spec(rng, "files_sparse_mha", [1, 0.8, 0.8], [30, 50, 50], 4, ["ADC"], ".mha", 1, sparse=True),
        _file_spec(rng, "files_2d_png", [999, 1, 1], [1, 120, 96], 8, ["rgb_to_0_1", "rgb_to_0_1", "rgb_to_0_1"],
                   ".png", 2, border=10),
        _file_spec(rng, "files_2d_png_odd", [999, 1, 1], [1, 90, 130], 5, ["noNorm"], ".png", 1, sparse=True),
        _file_spec(rng, "files_2d_nii_nonsquare", [1, 0.5, 0.9], [1, 100, 64], 6, ["zscore"], ".nii.gz", 2),
        _file_spec(rng, "files_nonsquare_3d", [4, 0.9, 1.5], [12, 70, 50], 6, [" CT", "rescale_to_0_1"], ".nii.gz",
                   2, border=3),
    ]
    return S


def _write_image(arr: np.ndarray, spacing, path: Path, is_label: bool) -> None:
    import SimpleITK as sitk

    if path.name.endswith(".png"):
        img = sitk.GetImageFromArray(arr[0].astype(np.uint8))
    else:
        img = sitk.GetImageFromArray(arr.astype(np.uint8 if is_label else np.float32))
        img.SetSpacing([float(s) for s in spacing[::-1]])
    sitk.WriteImage(img, str(path))


def _case_arrays(spec: Spec, i: int, rng) -> tuple[list[np.ndarray], np.ndarray]:
    shape = spec.shapes[i] if spec.kind == "files" else [1 if spec.shapes[i][0] == 1 else 2, 3, 3]
    seg = np.zeros(shape, np.uint8)
    b = spec.border if spec.kind == "files" else 0
    inner = tuple(slice(min(b, s // 3), s - min(b, s // 3)) if s > 1 else slice(0, 1) for s in shape)
    if spec.sparse:
        idx = tuple(int(rng.integers(0, s)) for s in shape)
        seg[idx] = 1
    else:
        core = tuple(slice(sl.start + (sl.stop - sl.start) // 3, sl.stop - (sl.stop - sl.start) // 3 or 1)
                     if sl.stop - sl.start > 2 else sl for sl in inner)
        seg[core] = rng.integers(1, spec.n_labels + 1)
    chans = []
    for c, _ in enumerate(spec.channel_names):
        img = np.zeros(shape, np.float32)
        img[inner] = rng.integers(1, 200, size=img[inner].shape).astype(np.float32) + 10 * c
        img[seg > 0] = 100 + 10 * seg[seg > 0] + c  # foreground inside the nonzero region
        chans.append(img)
    return chans, seg


def _fingerprint_json(spec: Spec, rng) -> dict:
    props = {}
    for c, _ in enumerate(spec.channel_names):
        lo, hi = sorted(rng.uniform(-1000, 2000, 2))
        props[str(c)] = {"max": hi, "mean": (lo + hi) / 2, "median": (lo + hi) / 2, "min": lo,
                         "percentile_00_5": lo + 1, "percentile_99_5": hi - 1, "std": (hi - lo) / 4}
    return {"foreground_intensity_properties_per_channel": props,
            "median_relative_size_after_cropping": spec.relative_size_after_crop,
            "shapes_after_crop": spec.shapes, "spacings": spec.spacings}


def dataset_name(i: int, spec: Spec) -> str:
    return f"Dataset{FIRST_ID + i:03d}_{spec.name}"


def generate(root: str | Path, seed: int = 0) -> list[dict]:
    """Write every dataset under ``root/raw`` and return its index (also saved as root/index.json)."""
    root = Path(root)
    specs = make_specs(seed)
    rng = np.random.default_rng(seed + 1)
    index = []
    for i, spec in enumerate(specs):
        name = dataset_name(i, spec)
        d = root / "raw" / name
        (d / "imagesTr").mkdir(parents=True, exist_ok=True)
        (d / "labelsTr").mkdir(parents=True, exist_ok=True)
        for k in range(len(spec.spacings)):
            case = f"case_{k:03d}"
            chans, seg = _case_arrays(spec, k, rng)
            for c, img in enumerate(chans):
                _write_image(img, spec.spacings[k], d / "imagesTr" / f"{case}_{c:04d}{spec.file_ending}", False)
            _write_image(seg, spec.spacings[k], d / "labelsTr" / f"{case}{spec.file_ending}", True)
        labels = {"background": 0, **{f"class{j}": j for j in range(1, spec.n_labels + 1)}}
        dj = {"channel_names": {str(c): n for c, n in enumerate(spec.channel_names)}, "labels": labels,
              "numTraining": len(spec.spacings), "file_ending": spec.file_ending, "name": name}
        (d / "dataset.json").write_text(json.dumps(dj, indent=1))
        entry = {"name": name, "spec": asdict(spec)}
        if spec.kind == "fingerprint":
            fp = _fingerprint_json(spec, rng)
            (d / "synthetic_fingerprint.json").write_text(json.dumps(fp))
        index.append(entry)
    (root / "index.json").write_text(json.dumps(index))
    return index
