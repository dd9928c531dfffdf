"""Unit checks of the data-safety helpers: folder lock, outputs that alias inputs, disk full, hidden files,
warnings for odd but usable cases, and the value checks of dataset.json."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from autoseg.core.errors import AutosegError
from autoseg.core.files import atomic_write_bytes, refuse_overwriting_inputs, remove_stale_temps
from autoseg.core.jsonio import save_json
from autoseg.core.locks import folder_lock
from autoseg.io.dataset import case_ids_in, load_dataset, verify_case


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path, capsys):
    with folder_lock(tmp_path) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        (tmp_path / ".x.npy.autoseg-tmp-1.tmp").write_bytes(b"")
        other = subprocess.run([sys.executable, "-c", "import sys; from autoseg.core.locks import folder_lock\n"
                                f"with folder_lock({str(tmp_path)!r}): pass"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert other.returncode != 0 and f"pid {os.getpid()}" in other.stderr
    assert not (tmp_path / ".autoseg.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".autoseg.lock").write_text(dead.stdout)
    (tmp_path / ".case.npy.autoseg-tmp-abc.tmp").write_bytes(b"half")
    with folder_lock(tmp_path):
        assert "no longer running" in capsys.readouterr().out
        assert not (tmp_path / ".case.npy.autoseg-tmp-abc.tmp").exists()  # a killed writer's temp file is gone
    assert remove_stale_temps(tmp_path) == 0
    with folder_lock(tmp_path) as outer:  # nested in one process: the inner block neither refuses nor removes
        with folder_lock(tmp_path):
            pass
        assert outer.is_file()
    assert not outer.exists()


def test_outputs_that_alias_inputs_are_refused(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"x")
    link = tmp_path / "out" / "scan.nii.gz"
    link.parent.mkdir()
    os.link(scan, link)  # a hard link: another name of the same file
    with pytest.raises(AutosegError, match="would replace the input"):
        refuse_overwriting_inputs([tmp_path / "." / "scan.nii.gz"], [scan])
    with pytest.raises(AutosegError, match="would replace the input"):
        refuse_overwriting_inputs([link], [scan])
    refuse_overwriting_inputs([tmp_path / "other.nii.gz"], [scan])


def test_disk_full_is_a_clear_error_and_leaves_no_file(tmp_path, monkeypatch):
    def full(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(AutosegError, match="disk is full"):
        atomic_write_bytes(tmp_path / "a.npy", full)
    with pytest.raises(AutosegError, match="disk is full"):  # torch.save's way of saying it
        atomic_write_bytes(tmp_path / "b.pt", lambda tmp: (_ for _ in ()).throw(RuntimeError("unexpected pos 64")))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="codec"):  # a writer's error with free space left is not disguised
        atomic_write_bytes(tmp_path / "d.nii.gz", lambda tmp: (_ for _ in ()).throw(RuntimeError("codec")))
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9, 1000))
    with pytest.raises(AutosegError, match="disk is full"):  # e.g. SimpleITK's "could not write" on a full disk
        atomic_write_bytes(tmp_path / "d.nii.gz", lambda tmp: (_ for _ in ()).throw(RuntimeError("codec")))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):  # other errors are not disguised
        atomic_write_bytes(tmp_path / "c", lambda tmp: (_ for _ in ()).throw(ValueError("x")))


def test_hidden_files_are_never_cases(tiny_phantom, tmp_path):
    import shutil

    ds = tmp_path / "d"
    shutil.copytree(tiny_phantom, ds)
    case = load_dataset(ds).cases[0]
    shutil.copy(ds / "imagesTr" / f"{case}_0000.nii.gz", ds / "imagesTr" / f".{case}_0000.nii.gz")
    shutil.copy(ds / "labelsTr" / f"{case}.nii.gz", ds / "labelsTr" / f".{case}.nii.gz")
    assert not any(c.startswith(".") for c in case_ids_in(ds / "imagesTr", ".nii.gz"))
    assert len(load_dataset(ds).cases) == json.loads((ds / "dataset.json").read_text())["numTraining"]


def test_odd_but_usable_cases_give_warnings(tiny_phantom, tmp_path, capsys):
    import shutil

    import SimpleITK as sitk

    ds = tmp_path / "d"
    shutil.copytree(tiny_phantom, ds)
    info = load_dataset(ds)
    case = info.cases[0]
    for path in (info.image_files(case)[0], info.label_file(case)):
        img = sitk.ReadImage(str(path))
        zero = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(img)))
        zero.CopyInformation(img)
        sitk.WriteImage(zero, str(path))
    verify_case(info, case)
    out = capsys.readouterr().out
    assert f"warning: case {case}: the label map is all background" in out
    assert f"warning: case {case}: channel 0 of the image is all zero" in out
    verify_case(info, info.cases[1])
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize("change,match", [
    ({"numTraining": "six"}, "numTraining"), ({"channel_names": ["MRI"]}, "channel_names"),
    ({"labels": {"background": 0, "a": 1, "b": 1}}, "values must be distinct"), ({"labels": {"background": 0, "a": -3}},
                                                                           "non-negative integer"),
])
def test_dataset_json_values(tiny_phantom, tmp_path, change, match):
    import shutil

    ds = tmp_path / "d"
    shutil.copytree(tiny_phantom, ds)
    dj = json.loads((ds / "dataset.json").read_text())
    save_json({**dj, **change}, ds / "dataset.json")
    with pytest.raises(AutosegError, match=match):
        load_dataset(ds)
