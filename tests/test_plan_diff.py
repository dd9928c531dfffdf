"""Differential test: autoseg's plans against nnU-Net v2's own planners (benchmarks/plan_diff).

nnU-Net's plans (default and ResEnc M/L/XL planners) for all 45 seeded datasets are committed in
tests/references/nnunet/plans.json (made by `bash benchmarks/make_nnunet_references.sh plans`), so the comparison
runs without nnU-Net: it fails on any disagreement not listed in compare.INTENDED, and on an INTENDED entry that no
longer matches one. The live check (nnU-Net's planners run again on two datasets, must reproduce the committed
plans) is the refresh path's own test: it runs only when asked (NNUNET_LIVE=1, with nnU-Net's venv at $NNUNET_VENV,
default /tmp/nnunet_venv) and is otherwise deselected, so the suite's time does not depend on a venv lying around.
The whole family with a fresh nnU-Net run: `PYTHONPATH=$PWD python -m benchmarks.plan_diff --refresh`.
"""
import copy
import json
from pathlib import Path

import pytest

from benchmarks.plan_diff import __main__ as harness
from benchmarks.plan_diff.compare import INTENDED, PRESETS, compare_all, index_digest, trim_dump
from benchmarks.plan_diff.datasets import generate

REFS = Path(__file__).parent / "references" / "nnunet" / "plans.json"
REFRESH = "bash benchmarks/make_nnunet_references.sh plans"


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> tuple[Path, dict]:
    """The generated datasets (autoseg plans them) and nnU-Net's committed plans for them."""
    refs = json.loads(REFS.read_text())
    work = tmp_path_factory.mktemp("plan_diff")
    index = generate(work, refs["generator"]["seed"])
    assert index_digest(index) == refs["generator"]["index_sha256"], (
        f"benchmarks/plan_diff/datasets.py generates other datasets than {REFS} was made from: run `{REFRESH}`")
    return work, refs["datasets"]


def test_plans_equal_committed_nnunet_plans(committed):
    work, nnunet = committed
    rows, stats = compare_all(work, nnunet)
    assert stats["datasets"] == len(nnunet) >= 45 and stats["fields"] > 7000
    bad = [r for r in rows if not r["intended"]]
    assert not bad, "\n".join(f"{r['dataset']} {r['preset']} {r['field']}: autoseg {r['autoseg']} nnU-Net "
                              f"{r['nnunet']}" for r in bad)
    used = {(ds, pr, f) for ds, pr, names, _ in INTENDED for f in names
            if any(ds in r["dataset"] and pr in ("*", r["preset"]) and r["field"] == f for r in rows)}
    stale = [(ds, pr, f) for ds, pr, names, _ in INTENDED for f in names if (ds, pr, f) not in used]
    assert not stale, f"compare.INTENDED lists fields on which autoseg now agrees with nnU-Net: {stale}"


def test_harness_reports_a_planted_disagreement(committed):
    work, nnunet = committed
    name = next(n for n in nnunet if "ct_square_exact" in n)
    tampered = copy.deepcopy(nnunet[name])
    tampered["plans"]["resenc-l"]["configurations"]["3d_fullres"]["batch_size"] += 1
    del tampered["plans"]["default"]["configurations"]["3d_cascade_fullres"]
    tampered["separate_z"]["resenc-m"]["2d"][0] = [True, 0]
    rows, _ = compare_all(work, {name: tampered}, names=["ct_square_exact"])
    fields = {(r["preset"], r["field"]) for r in rows if not r["intended"]}
    planted = {("resenc-l", "3d_fullres.batch_size"), ("default", "configurations"),
               ("resenc-m", "2d.separate_z_per_case"), ("default", "3d_cascade_fullres.patch_size"),
               ("resenc-l", "3d_cascade_fullres.batch_size")}  # the cascade inherits 3d_fullres's batch
    assert planted <= fields
    assert all((p, f) in planted or (p == "default" and f.startswith("3d_cascade_fullres.")) for p, f in fields), fields


@pytest.mark.slow
@pytest.mark.nnunet_live
def test_nnunet_reproduces_the_committed_plans(tmp_path):
    """The refresh path: nnU-Net's planners, run again on two datasets, give the committed plans."""
    if not harness.nnunet_python().is_file():
        pytest.skip(f"live refresh check: nnU-Net's python not found at {harness.nnunet_python()} (install nnU-Net "
                    "v2 in a virtual environment and set NNUNET_VENV); the committed plans are compared above")
    only = ["half_voxel_even", "files_2d_png_odd"]
    fresh = trim_dump(harness.prepare(tmp_path, 0, only, refresh=True))
    refs = json.loads(REFS.read_text())["datasets"]
    assert len(fresh) == 2
    for name, d in fresh.items():
        assert d == refs[name], f"{name}: nnU-Net now plans differently from {REFS}; run `{REFRESH}`"
        assert set(d["plans"]) == set(PRESETS)


def test_generated_family_is_seeded_and_covers_the_space(tmp_path):
    from benchmarks.plan_diff.datasets import generate

    a = generate(tmp_path / "a", seed=0)
    b = generate(tmp_path / "b", seed=0)
    assert a == b and len(a) >= 40
    specs = [e["spec"] for e in a]
    assert {s["file_ending"] for s in specs} >= {".png", ".nii.gz", ".mha"}
    assert {s["kind"] for s in specs} == {"files", "fingerprint"}
    assert {len(s["channel_names"]) for s in specs} >= {1, 2, 3}
    names = {n for s in specs for n in s["channel_names"]}
    assert names >= {"CT", " CT", "noNorm", "none", "rgb", "rgb_to_0_1", "rescale_to_0_1", "T2"}
    assert {len(s["spacings"]) % 2 for s in specs} == {0, 1}  # odd and even case counts
    coarse = set()
    for s in specs:
        sp = s["spacings"][0]
        if sp[0] != 999.0 and max(sp) > 3 * sorted(sp)[1]:
            coarse.add(sp.index(max(sp)))
    assert coarse == {0, 1, 2}  # anisotropic with the coarse axis first, in the middle and last
    assert any(s["shapes"][0][0] == 1 for s in specs) and any(max(s["shapes"][0]) >= 1024 for s in specs)
