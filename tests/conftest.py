import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ACDC = SHARED_DATA / "Dataset027_ACDC"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    """Checks that run nnU-Net itself (the refresh path of the committed references) run only with NNUNET_LIVE=1;
    otherwise they are deselected, not skipped: the committed references are what the suite compares against."""
    if os.environ.get("NNUNET_LIVE") == "1":
        return
    live = [i for i in items if i.get_closest_marker("nnunet_live")]
    if live:
        config.hook.pytest_deselected(items=live)
        items[:] = [i for i in items if not i.get_closest_marker("nnunet_live")]


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


# --- known-answer data: the phantom stored as a scanner might store it (issue 23) ---

# training steps (batch) per configuration: LV Dice ~0.95 on the held-out patient in both, in seconds
KNOWN_ANSWER_STEPS = {"2d": (60, 4), "3d_fullres": (30, 2)}


@pytest.fixture(scope="session")
def oblique_phantom(tiny_phantom, tmp_path_factory) -> Path:
    """``tiny_phantom``'s training cases and a held-out patient ("heldout_frame01/02"), rewritten with the coarse
    (slice) axis LAST in the array, so that autoseg's transpose is not the identity, with a direction rotated out
    of the axes, a shifted origin and a zero margin on one side of each in-plane axis: images and labels alike, so
    that each label still lies on its image. Predictions must land on the reference labels on this grid.

    The phantom centres its heart in the field of view, and mirrored about the centre the LV keeps most of its
    Dice; so the held-out patient is drawn on a wider field (64 voxels) and cut to the training cases' 48 with its
    LV 8 voxels off-centre along both in-plane axes, on the anti-diagonal: a prediction mirrored, or with its
    in-plane axes swapped, then misses it."""
    import numpy as np
    import SimpleITK as sitk

    from autoseg.datasets.phantom import make_phantom_dataset

    wide = make_phantom_dataset(tmp_path_factory.mktemp("wide") / "data", n_train_patients=0, n_test_patients=1,
                                seed=7, size=64)
    lv = np.argwhere(sitk.GetArrayFromImage(sitk.ReadImage(str(wide / "labelsTs" / "phantom000_frame01.nii.gz")))
                     == 3)
    cy, cx = lv.mean(0)[1:]
    y0, x0 = int(np.clip(round(cy) - 24 + 8, 0, 16)), int(np.clip(round(cx) - 24 - 8, 0, 16))  # LV at (-8, +8)
    files = {f: f.relative_to(tiny_phantom) for sub in ("imagesTr", "labelsTr")
             for f in (tiny_phantom / sub).glob("*.nii.gz")}
    files.update({f: Path(f.parent.name, f.name.replace("phantom000", "heldout")) for sub in ("imagesTs", "labelsTs")
                  for f in (wide / sub).glob("*.nii.gz")})
    out = tmp_path_factory.mktemp("oblique") / "data"
    axis, angle = np.ones(3) / np.sqrt(3), 0.6  # 34 degrees about the body diagonal
    rot = np.array(sitk.VersorTransform(tuple(axis), angle).GetMatrix()).reshape(3, 3)
    for f, rel in sorted(files.items()):
        img = sitk.ReadImage(str(f))
        if "heldout" in rel.name:
            img = img[x0:x0 + 48, y0:y0 + 48, :]  # SimpleITK slices keep the physical positions
        img = sitk.PermuteAxes(img, [2, 0, 1])  # SimpleITK (x, y, z) -> (z, x, y): the array is (y, x, z)
        # zeros before the first in-plane axis (32) and after the second (48): the heart sits off-centre in the
        # whole grid as well (cropped away inside, restored on output)
        img = sitk.ConstantPad(img, (0, 0, 32), (0, 48, 0), 0)
        img.SetDirection(tuple((rot @ np.array(img.GetDirection()).reshape(3, 3)).ravel()))
        img.SetOrigin(tuple(np.array(img.GetOrigin()) + (31.5, -47.25, 12.0)))
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(dst))
    (out / "dataset.json").write_text((tiny_phantom / "dataset.json").read_text())
    return out


@pytest.fixture(scope="session")
def oblique_run(oblique_phantom, tmp_path_factory) -> Path:
    """``oblique_phantom`` planned and preprocessed for 2d and 3d_fullres, both networks made small (4..16
    features) so that a configuration trains in seconds."""
    import json

    from autoseg.cli import main

    run = tmp_path_factory.mktemp("oblique_run") / "run"
    assert main(["plan", str(oblique_phantom), "--out", str(run), "-c", "2d", "3d_fullres", "-j", "1"]) == 0
    plans = json.loads((run / "plans.json").read_text())
    assert plans["transpose_forward"] == [2, 0, 1]  # what the data is for: the slice axis comes first inside
    for c in ("2d", "3d_fullres"):
        plans["configurations"][c]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 16]
    (run / "plans.json").write_text(json.dumps(plans))
    return run


def _train_known_answer(run: Path, config: str) -> Path:
    """Fold 'all' (every training patient) for KNOWN_ANSWER_STEPS: AdamW at 0.01 learns the phantom's LV and
    myocardium within them; deterministic seed."""
    from autoseg.cli import main

    steps, batch = KNOWN_ANSWER_STEPS[config]
    assert main(["train", str(run), "-c", config, "-f", "all", "--epochs", "1", "--iters-per-epoch", str(steps),
                 "--val-iters", "0", "--batch-size", str(batch),
                 "--optimizer", "adamw", "--lr", "0.01", "--num-workers", "0", "--no-validation", "--seed", "0"]) == 0
    return run


@pytest.fixture(scope="session")
def oblique_2d(oblique_run) -> Path:
    """``oblique_run`` with its 2d configuration trained (shared by the known-answer and postprocessing tests)."""
    return _train_known_answer(oblique_run, "2d")


@pytest.fixture(scope="session")
def oblique_3d(oblique_run) -> Path:
    """``oblique_run`` with its 3d_fullres configuration trained."""
    return _train_known_answer(oblique_run, "3d_fullres")


@pytest.fixture(scope="session")
def doubled_heart(oblique_phantom, tmp_path_factory) -> Path:
    """A folder with one image: a held-out oblique phantom case whose heart appears twice, side by side with a gap
    of 8 empty columns, on the case's spacing and direction. A model that segments the heart finds every label in
    two components of similar size, so keeping the largest component visibly removes one."""
    import numpy as np
    import SimpleITK as sitk

    img = sitk.ReadImage(str(oblique_phantom / "imagesTs" / "heldout_frame01_0000.nii.gz"))
    heart = sitk.GetArrayFromImage(img)[32:, :48]  # the phantom's own field of view (conftest pads around it)
    two = np.concatenate([heart, np.zeros((heart.shape[0], 8, heart.shape[2]), heart.dtype), heart], axis=1)
    out = sitk.GetImageFromArray(two)
    for set_, get in ((out.SetSpacing, img.GetSpacing), (out.SetOrigin, img.GetOrigin),
                      (out.SetDirection, img.GetDirection)):
        set_(get())
    folder = tmp_path_factory.mktemp("doubled")
    sitk.WriteImage(out, str(folder / "twohearts_0000.nii.gz"))
    return folder


@pytest.fixture(scope="session")
def cv_postprocessed_2d(oblique_2d, tmp_path_factory) -> Path:
    """A copy of ``oblique_2d``'s 2d model whose cross-validation decided to keep the largest LV component only
    (postprocessing.json as `autoseg crossval` writes it). Fold 'all' without that file would keep the largest
    component of every label (the prior from the fingerprint), so the file's choice is visible."""
    import shutil

    from autoseg.core.jsonio import save_json
    from autoseg.postprocessing.best import postprocessing_record

    run = tmp_path_factory.mktemp("cv_pp") / "run"
    shutil.copytree(oblique_2d, run, ignore=shutil.ignore_patterns("preprocessed", "3d_fullres"))
    rows = [["RV", 0.6, 0.6, "no"], ["MYO", 0.9, 0.88, "no"], ["LV", 0.93, 0.95, "yes"]]
    save_json(postprocessing_record(rows, {"background": 0, "RV": 1, "MYO": 2, "LV": 3}, 10),
              run / "2d" / "postprocessing.json")
    return run


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory):
    """The valid inputs the bad-input corpus breaks and the kill drills run on (tests/corpus/generate.py): built
    once, as neither changes them (the corpus asserts so after every kind)."""
    from tests.corpus.generate import build_base

    return build_base(tmp_path_factory.mktemp("corpus_base"))
