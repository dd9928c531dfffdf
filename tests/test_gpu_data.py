"""benchmarks/gpu_data.py carries NIfTI images to the GPU machine as JPEG 2000 slices: the rebuilt file must be
the original, byte for byte, and images it cannot carry losslessly must be left as they are."""
import gzip
import tarfile

import numpy as np
import SimpleITK as sitk

from benchmarks import gpu_data


def _nifti(tmp_path, arr, name="img.nii.gz"):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5625, 1.5625, 10.0))
    img.SetOrigin((3.0, -2.0, 7.5))
    path = tmp_path / name
    sitk.WriteImage(img, str(path))
    return path


def test_round_trip_is_byte_exact(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 2000, size=(3, 17, 23)).astype(np.int16)
    nii = gzip.decompress(_nifti(tmp_path, arr).read_bytes())
    blob = gpu_data.encode(nii)
    assert blob is not None and gpu_data.decode(blob) == nii


def test_pack_unpack_gives_the_same_images_and_other_files(tmp_path):
    src = tmp_path / "src"
    (src / "imagesTr").mkdir(parents=True)
    arr = np.arange(2 * 9 * 11, dtype=np.int16).reshape(2, 9, 11) * 7
    _nifti(src / "imagesTr", arr, "a_0000.nii.gz")
    (src / "dataset.json").write_text('{"file_ending": ".nii.gz"}')
    gpu_data.pack(src, tmp_path / "d.tar")
    with tarfile.open(tmp_path / "d.tar") as t:
        assert sorted(t.getnames()) == ["dataset.json", "imagesTr/a_0000.nii.j2k"]
    gpu_data.unpack(tmp_path / "d.tar", tmp_path / "dst")
    back = sitk.ReadImage(str(tmp_path / "dst" / "imagesTr" / "a_0000.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)
    assert back.GetSpacing() == (1.5625, 1.5625, 10.0) and back.GetOrigin() == (3.0, -2.0, 7.5)
    assert (tmp_path / "dst" / "dataset.json").read_text() == '{"file_ending": ".nii.gz"}'


def test_negative_or_float_images_travel_unchanged(tmp_path):
    neg = gzip.decompress(_nifti(tmp_path, np.full((2, 4, 4), -5, np.int16), "n.nii.gz").read_bytes())
    flt = gzip.decompress(_nifti(tmp_path, np.ones((2, 4, 4), np.float32), "f.nii.gz").read_bytes())
    assert gpu_data.encode(neg) is None and gpu_data.encode(flt) is None
