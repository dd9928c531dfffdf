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
