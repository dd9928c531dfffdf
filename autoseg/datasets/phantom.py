"""A synthetic short-axis cine MRI phantom of the heart, the embedded default for the demo and fast tests.

Each patient has an end-diastolic (ED) and an end-systolic (ES) stack. Labels follow ACDC: 1 RV cavity,
2 LV myocardium, 3 LV cavity. Geometry varies per patient: in-plane spacing, slice thickness (anisotropic),
number of slices, origin and an in-plane rotation of the direction cosines. The LV is an ellipse that narrows from
base to apex and contracts at ES while the myocardium thickens; the RV is a crescent hugging the septum that
shrinks toward the apex and vanishes there. Images add a body outline, partial-volume blur, a smooth multiplicative
bias field, Rician-like noise and a random intensity scale.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ..core.jsonio import save_json
from ..io.images import Geometry, write_image

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _patient_params(rng: np.random.Generator) -> dict:
    return {
        "spacing_xy": float(rng.uniform(1.5, 2.1)),
        "spacing_z": float(rng.uniform(6.0, 10.0)),
        "n_slices": int(rng.integers(8, 12)),
        "lv_radius": float(rng.uniform(22, 30)),  # ED endocardial radius at the base, mm
        "ellipticity": float(rng.uniform(0.85, 1.15)),
        "wall": float(rng.uniform(7, 10)),  # ED wall thickness, mm
        "ef": float(rng.uniform(0.35, 0.65)),
        "rv_scale": float(rng.uniform(0.95, 1.15)),
        "rv_angle": float(rng.uniform(np.pi - 0.4, np.pi + 0.4)),
        "center": rng.uniform(-6, 6, 2),
        "rotation": float(rng.uniform(-0.5, 0.5)),
        "origin": rng.uniform(-150, 150, 3),
        "scale": float(rng.uniform(80, 900)),
    }


def phantom_case(p: dict, phase: str, rng: np.random.Generator, size: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label int16), both (Z, Y, X)."""
    nz, sxy = p["n_slices"], p["spacing_xy"]
    yy, xx = np.meshgrid((np.arange(size) - size / 2 + 0.5) * sxy, (np.arange(size) - size / 2 + 0.5) * sxy,
                         indexing="ij")
    # the LV sits off-centre, away from the RV, so that the whole heart is in view
    yy = yy - p["center"][0] + 12 * np.sin(p["rv_angle"])
    xx = xx - p["center"][1] + 12 * np.cos(p["rv_angle"])
    es = phase == "ES"
    radial_scale = np.sqrt(1 - p["ef"]) if es else 1.0  # area ~ volume per slice
    wall = p["wall"] * (1.35 if es else 1.0)
    img = np.zeros((nz, size, size), np.float32)
    lab = np.zeros((nz, size, size), np.int16)
    body = (yy / 70) ** 2 + (xx / 78) ** 2 <= 1
    for z in range(nz):
        t = z / max(nz - 1, 1)  # 0 = base, 1 = apex
        r = p["lv_radius"] * radial_scale * np.sqrt(max(1 - 0.85 * t ** 2, 0.05))
        ry, rx = r * p["ellipticity"], r / p["ellipticity"]
        d_endo = np.sqrt((yy / ry) ** 2 + (xx / rx) ** 2)
        d_epi = np.sqrt((yy / (ry + wall)) ** 2 + (xx / (rx + wall)) ** 2)
        lv = d_endo <= 1
        myo = (d_epi <= 1) & ~lv
        rv = np.zeros_like(lv)
        if t < 0.8:
            # crescent: an ellipse centred off the LV towards the RV side, minus the LV and a thin septal gap
            r_epi = max(rx, ry) + wall
            rr = r_epi * p["rv_scale"] * (1 - 0.6 * t) * (0.85 if es else 1.0)
            off = 0.55 * r_epi
            cy, cx = off * np.sin(p["rv_angle"]), off * np.cos(p["rv_angle"])
            du, dv = yy - cy, xx - cx
            ca, sa = np.cos(p["rv_angle"]), np.sin(p["rv_angle"])
            along, across = du * sa + dv * ca, du * ca - dv * sa
            rv = ((along / (0.95 * rr)) ** 2 + (across / (1.15 * rr)) ** 2 <= 1) & (d_epi > 1.08)
        lab[z][rv] = 1
        lab[z][myo] = 2
        lab[z][lv] = 3
        tissue = np.where(body, 0.35, 0.0)
        tissue = tissue + np.where(body, 0.08 * gaussian_filter(rng.standard_normal((size, size)), 3), 0)
        im = tissue.copy()
        im[lv | rv] = rng.uniform(0.9, 1.05)
        im[myo] = rng.uniform(0.18, 0.26)
        img[z] = gaussian_filter(im, 0.7)
    # smooth multiplicative bias field and noise
    gy, gx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    a = rng.uniform(-0.25, 0.25, 4)
    bias = 1 + a[0] * gx + a[1] * gy + a[2] * gx * gy + a[3] * (gx ** 2 - gy ** 2) / 2
    img = img * bias[None]
    sigma = rng.uniform(0.02, 0.06)
    img = np.sqrt((img + sigma * rng.standard_normal(img.shape)) ** 2 + (sigma * rng.standard_normal(img.shape)) ** 2)
    return (img * p["scale"]).astype(np.float32), lab


def _geometry(p: dict, shape) -> Geometry:
    c, s = np.cos(p["rotation"]), np.sin(p["rotation"])
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    sxy, sz = p["spacing_xy"], p["spacing_z"]
    return Geometry(3, tuple(shape), (sz, sxy, sxy), (sxy, sxy, sz), tuple(float(v) for v in p["origin"]),
                    direction)


def make_phantom_dataset(out_dir: str | Path, n_train_patients: int = 10, n_test_patients: int = 4,
                         seed: int = 0, size: int = 80, spacing: tuple[float, float] | None = None) -> Path:
    """Write a phantom dataset in the nnU-Net v2 raw layout (imagesTr/labelsTr, imagesTs/labelsTs, dataset.json,
    cases.csv). Returns the dataset folder. Deterministic for a given seed. ``spacing`` (in-plane, slice) gives
    every patient the same spacing, so that no case is resampled (for comparisons of two tools' inference)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train_patients + n_test_patients):
        split = "Tr" if i < n_train_patients else "Ts"
        patient = f"phantom{i:03d}"
        p = _patient_params(rng)
        if spacing is not None:
            p["spacing_xy"], p["spacing_z"] = float(spacing[0]), float(spacing[1])
        for phase, frame in (("ED", "frame01"), ("ES", "frame02")):
            case = f"{patient}_{frame}"
            img, lab = phantom_case(p, phase, rng, size)
            geom = _geometry(p, img.shape)
            write_image(img, geom, out / f"images{split}" / f"{case}_0000.nii.gz")
            write_image(lab, geom, out / f"labels{split}" / f"{case}.nii.gz")
            rows.append({"case": case, "patient": patient, "phase": phase, "split": split})
    save_json({"name": "CardiacPhantom", "channel_names": {"0": "cineMRI"}, "labels": LABELS,
               "numTraining": 2 * n_train_patients, "file_ending": ".nii.gz",
               "description": "synthetic short-axis cine MRI phantom generated by autoseg"}, out / "dataset.json")
    with open(out / "cases.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["case", "patient", "phase", "split"])
        w.writeheader()
        w.writerows(rows)
    return out
