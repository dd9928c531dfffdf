"""Sharded and resumable prediction on a tiny trained phantom model: two parts give exactly the files of one
unsharded run, --continue redoes nothing (or only what is missing), and `submit --predict` fans the parts out."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_phantom, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("shard") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(run), "-c", "2d", "-j", "1"]) == 0
    assert main(["train", str(run), "-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2", "--val-iters",
                 "1", "--batch-size", "2", "--num-workers", "0", "--no-validation"]) == 0
    return run


def _predict(run: Path, inp: Path, out: Path, *extra: str) -> None:
    assert main(["predict", str(run), "-i", str(inp), "-o", str(out), "-c", "2d", "-f", "0", "--no-tta",
                 *extra]) == 0


def _outputs(folder: Path) -> list[Path]:
    """The label files in an output folder (not hidden temporary files, locks or bookkeeping files)."""
    return sorted(p for p in folder.glob("*.nii.gz") if not p.name.startswith("."))


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in _outputs(folder)}


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in _outputs(folder)}


def test_two_parts_make_the_unsharded_result_and_continue_redoes_nothing(trained, tiny_phantom, tmp_path, capsys):
    images = tiny_phantom / "imagesTr"  # 10 cases
    _predict(trained, images, tmp_path / "whole")
    for k in (0, 1):
        _predict(trained, images, tmp_path / "parts", "--num-parts", "2", "--part-id", str(k))
    out = capsys.readouterr().out
    assert "part 0 of 2: 5 of 10 case(s)" in out and "part 1 of 2: 5 of 10 case(s)" in out
    whole, parts = _arrays(tmp_path / "whole"), _arrays(tmp_path / "parts")
    assert len(whole) == 10 and sorted(whole) == sorted(parts)
    for name in whole:
        assert np.array_equal(whole[name], parts[name]), name

    before = _mtimes(tmp_path / "parts")
    for k in (0, 1):
        _predict(trained, images, tmp_path / "parts", "--num-parts", "2", "--part-id", str(k), "--continue")
    assert _mtimes(tmp_path / "parts") == before
    assert capsys.readouterr().out.count("5 already done (--continue), 0 to predict") == 2

    # a case whose output is missing (a killed part) is the only one redone
    (tmp_path / "parts" / "phantom001_frame02.nii.gz").unlink()
    _predict(trained, images, tmp_path / "parts", "--num-parts", "2", "--part-id", "1", "--continue")
    after = _mtimes(tmp_path / "parts")
    assert {n for n in after if after[n] != before.get(n)} == {"phantom001_frame02.nii.gz"}
    assert np.array_equal(_arrays(tmp_path / "parts")["phantom001_frame02.nii.gz"],
                          whole["phantom001_frame02.nii.gz"])


def test_bad_part_id_is_an_error_naming_the_option(trained, tiny_phantom, tmp_path, capsys):
    assert main(["predict", str(trained), "-i", str(tiny_phantom / "imagesTs"), "-o", str(tmp_path / "o"),
                 "--num-parts", "2", "--part-id", "2"]) == 2
    assert "--part-id 2: must be between 0 and 1" in capsys.readouterr().err


def test_submit_predict_fans_parts_out_on_the_local_pool(trained, tiny_phantom, tmp_path):
    images = tiny_phantom / "imagesTs"  # 2 cases, one per part
    _predict(trained, images, tmp_path / "whole")
    assert main(["submit", str(trained), "--predict", "-i", str(images), "-o", str(tmp_path / "fan"),
                 "--num-parts", "2", "--scheduler", "local", "--max-parallel", "2",
                 "--predict-args=-c 2d -f 0 --no-tta"]) == 0
    assert sorted(_arrays(tmp_path / "fan")) == sorted(_arrays(tmp_path / "whole"))
    logs = sorted((trained / "jobs" / "logs").glob("predict_part*-1.log"))
    assert len(logs) == 2 and all("exit status 0" in p.read_text() for p in logs)


def test_a_killed_part_leaves_only_whole_files_and_continue_finishes_it(trained, tiny_phantom, tmp_path):
    images, out = tiny_phantom / "imagesTr", tmp_path / "killed"
    _predict(trained, images, tmp_path / "whole")
    cmd = [sys.executable, "-m", "autoseg.cli", "predict", str(trained), "-i", str(images), "-o", str(out), "-c",
           "2d", "-f", "0", "--no-tta"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while p.poll() is None and not _outputs(out):
        time.sleep(0.01)
    p.kill()
    p.wait()
    done = _mtimes(out)  # a killed writer may also have left a hidden temporary file
    finished = set(done)
    assert 1 <= len(finished) < 10
    whole = _arrays(tmp_path / "whole")
    for n in finished:  # every visible file is complete and right
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / n))), whole[n]), n
    _predict(trained, images, out, "--continue")
    after = _mtimes(out)
    assert sorted(after) == sorted(whole)
    assert all(after[n] == done[n] for n in finished)  # the finished cases were not redone
