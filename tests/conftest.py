import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ACDC = SHARED_DATA / "Dataset027_ACDC"

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def acdc() -> Path:
    if not (ACDC / "dataset.json").is_file():
        pytest.skip(f"real-data test: {ACDC} is absent (the shared ACDC dataset lives beside the project root)")
    return ACDC


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    from autoseg.datasets.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", n_train_patients=5,
                                n_test_patients=1, seed=1, size=48)


@pytest.fixture(scope="session")
def small_planned_run(tiny_phantom, tmp_path_factory) -> Path:
    """A planned and preprocessed run whose 2d network is made small (features 4..16), so a fold takes seconds
    (the train drills and the torchrun tests)."""
    import json

    from autoseg.cli import main

    run = tmp_path_factory.mktemp("small_run") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 16]
    (run / "plans.json").write_text(json.dumps(plans))
    return run


@pytest.fixture
def small_run(small_planned_run, tmp_path) -> Path:
    """A fresh copy of ``small_planned_run`` for one test to change."""
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(small_planned_run, dst)
    return dst


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory):
    """The valid inputs the bad-input corpus breaks and the kill drills run on (tests/corpus/generate.py): built
    once, as neither changes them (the corpus asserts so after every kind)."""
    from tests.corpus.generate import build_base

    return build_base(tmp_path_factory.mktemp("corpus_base"))
