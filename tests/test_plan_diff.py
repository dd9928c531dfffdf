"""Differential test: autoseg's plans against nnU-Net v2's own planners (benchmarks/plan_diff).

Runs nnU-Net (default and ResEnc M/L/XL planners) from its virtual environment ($NNUNET_VENV, default
/tmp/nnunet_venv) on a subset of the seeded datasets that touches every rule (large 2D image, half-voxel
median, non-square in-plane spacing, 3d_lowres dropped, cascade and square-median ties, real PNG files fingerprinted
by both tools) and fails on any disagreement not listed as intended.
The whole family: `PYTHONPATH=$PWD python -m benchmarks.plan_diff`.
"""
import copy
import json
import os
from pathlib import Path

import pytest

from benchmarks.plan_diff import __main__ as harness
from benchmarks.plan_diff.compare import compare_all

SUBSET = ["half_voxel_even", "nonsquare_inplane_4mm", "lowres_just_over", "2d_large_1024x1280", "files_2d_png_odd",
          "mr_aniso_last_few", "ct_square_exact"]


@pytest.fixture(scope="module")
def nnunet_run(tmp_path_factory):
    if not harness.nnunet_python().is_file():
        pytest.skip(f"differential test: nnU-Net's python not found at {harness.nnunet_python()} (install nnU-Net v2 "
                    "in a virtual environment and set NNUNET_VENV)")
    work = Path(os.environ.get("PLAN_DIFF_WORK", tmp_path_factory.mktemp("plan_diff")))
    return work, harness.prepare(work, 0, SUBSET, refresh=False)


@pytest.mark.slow
def test_plans_equal_nnunets(nnunet_run):
    work, nnunet = nnunet_run
    rows, stats = compare_all(work, nnunet)
    assert stats["datasets"] == len(SUBSET) and stats["fields"] > 500
    bad = [r for r in rows if not r["intended"]]
    assert not bad, "\n".join(f"{r['dataset']} {r['preset']} {r['field']}: autoseg {r['autoseg']} nnU-Net "
                              f"{r['nnunet']}" for r in bad)


@pytest.mark.slow
def test_harness_reports_a_planted_disagreement(nnunet_run):
    work, nnunet = nnunet_run
    tampered = copy.deepcopy(nnunet)
    name = next(n for n in tampered if "ct_square_exact" in n)
    tampered[name]["plans"]["resenc-l"]["configurations"]["3d_fullres"]["batch_size"] += 1
    del tampered[name]["plans"]["default"]["configurations"]["3d_cascade_fullres"]
    rows, _ = compare_all(work, json.loads(json.dumps(tampered)))
    fields = {(r["preset"], r["field"]) for r in rows if not r["intended"]}
    assert ("resenc-l", "3d_fullres.batch_size") in fields and ("default", "configurations") in fields


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
