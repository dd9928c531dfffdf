import json

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.core.errors import AutosegError
from autoseg.io.dataset import load_dataset, verify_dataset
from autoseg.io.images import Geometry, read_case_images, read_label, write_label


@pytest.mark.parametrize("ending", [".nii.gz", ".mha", ".nrrd"])
def test_label_geometry_round_trip(tmp_path, ending):
    arr = np.random.default_rng(0).integers(0, 4, (5, 7, 9)).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 5.0))
    img.SetOrigin((10.0, -20.0, 3.5))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    src = tmp_path / f"in{ending}"
    sitk.WriteImage(img, str(src))
    seg, geom = read_label(src)
    assert geom.spacing == pytest.approx((5.0, 0.9, 0.7))
    out = tmp_path / f"out{ending}"
    write_label(seg, geom, out)
    back = sitk.ReadImage(str(out))
    assert back.GetSize() == img.GetSize()
    assert np.allclose(back.GetSpacing(), img.GetSpacing())
    assert np.allclose(back.GetOrigin(), img.GetOrigin())
    assert np.allclose(back.GetDirection(), img.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)


def test_png_is_2d(tmp_path):
    arr = (np.arange(30 * 40).reshape(30, 40) % 256).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "a_0000.png"))
    data, geom = read_case_images([tmp_path / "a_0000.png"])
    assert data.shape == (1, 1, 30, 40)
    assert geom.dimension == 2 and geom.spacing[0] == 999.0
    write_label((data[0] > 100).astype(np.int16), geom, tmp_path / "a.png")
    back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a.png")))
    assert back.shape == (30, 40) and np.array_equal(back, (arr > 100).astype(np.uint8))


def test_write_label_rejects_wrong_shape(tmp_path):
    g = Geometry(3, (2, 3, 4), (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(AutosegError, match="does not match"):
        write_label(np.zeros((2, 3, 5), np.int16), g, tmp_path / "x.nii.gz")
    assert not (tmp_path / "x.nii.gz").exists()


def _copy_dataset(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_dataset_loads_with_groups(tiny_phantom):
    ds = load_dataset(tiny_phantom)
    assert len(ds.cases) == 10
    assert ds.groups["phantom000_frame01"] == ds.groups["phantom000_frame02"] == "phantom000"
    ds2 = load_dataset(tiny_phantom, group_by=r"^(phantom\d+)_")
    assert ds2.groups == ds.groups


def _edit_json(path, **kw):
    d = json.loads(path.read_text())
    d.update(kw)
    path.write_text(json.dumps(d))


def test_bad_inputs_name_the_case(tiny_phantom, tmp_path):
    # missing channel file
    d = _copy_dataset(tiny_phantom, tmp_path / "d1")
    (d / "imagesTr" / "phantom001_frame02_0000.nii.gz").rename(d / "imagesTr" / "x.nii.gz")
    with pytest.raises(AutosegError, match="phantom001_frame02"):
        load_dataset(d)
    # missing label
    d = _copy_dataset(tiny_phantom, tmp_path / "d2")
    (d / "labelsTr" / "phantom002_frame01.nii.gz").unlink()
    with pytest.raises(AutosegError, match="phantom002_frame01: missing label"):
        load_dataset(d)
    # numTraining mismatch
    d = _copy_dataset(tiny_phantom, tmp_path / "d3")
    _edit_json(d / "dataset.json", numTraining=11)
    with pytest.raises(AutosegError, match="numTraining=11"):
        load_dataset(d)
    # label value not declared
    d = _copy_dataset(tiny_phantom, tmp_path / "d4")
    _edit_json(d / "dataset.json", labels={"background": 0, "RV": 1, "MYO": 2})
    with pytest.raises(AutosegError, match=r"case phantom000_frame01: label values \[3\]"):
        verify_dataset(d)
    # shape mismatch and NaN
    d = _copy_dataset(tiny_phantom, tmp_path / "d5")
    lab = sitk.ReadImage(str(d / "labelsTr" / "phantom003_frame01.nii.gz"))
    sitk.WriteImage(lab[:, :-1, :], str(d / "labelsTr" / "phantom003_frame01.nii.gz"))
    img = sitk.ReadImage(str(d / "imagesTr" / "phantom000_frame01_0000.nii.gz"))
    a = sitk.GetArrayFromImage(img)
    a[0, 0, 0] = np.nan
    bad = sitk.GetImageFromArray(a)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(d / "imagesTr" / "phantom000_frame01_0000.nii.gz"))
    with pytest.raises(AutosegError, match="phantom000_frame01: image contains NaN"):
        verify_dataset(d)
    (d / "imagesTr" / "phantom000_frame01_0000.nii.gz").unlink()
    (d / "labelsTr" / "phantom000_frame01.nii.gz").unlink()
    _edit_json(d / "dataset.json", numTraining=9)
    with pytest.raises(AutosegError, match="phantom003_frame01: image shape"):
        verify_dataset(d)


def test_empty_dataset(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0,
                                           "a": 1}, "numTraining": 0, "file_ending": ".nii.gz"}))
    with pytest.raises(AutosegError, match="empty"):
        load_dataset(tmp_path)


def test_written_files_have_ordinary_permissions(tmp_path):
    import os
    import stat

    from autoseg.core.jsonio import save_json

    save_json({"a": 1}, tmp_path / "x.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~umask
