"""`autoseg import-nnunet`: plans translation, weight renaming (against the key lists of nnU-Net's own networks),
the restricted checkpoint reader, and the known answer: nnU-Net's own tiny trained model, imported, predicts the
labels nnUNetv2_predict gave (tests/references/nnunet/, made by `bash benchmarks/make_nnunet_references.sh`)."""
import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.cli import main
from autoseg.core.errors import AutosegError
from autoseg.networks import build_network
from autoseg.sharing.nnunet_import import convert_weights, load_nnunet_checkpoint

ROOT = Path(__file__).resolve().parents[1]
REFS = ROOT / "tests" / "references" / "nnunet"
MODEL = REFS / "model"


def _nnunet_name(key: str) -> str:
    """autoseg U-Net parameter name -> nnU-Net's (the inverse of the import's renaming)."""
    p = key.split(".")
    if p[0] == "encoder":
        return f"encoder.stages.{p[1]}.0.convs.{p[2]}.{'conv' if p[3] == '0' else 'norm'}.{p[4]}"
    if p[0] == "decoder":
        return f"decoder.stages.{p[1]}.convs.{p[2]}.{'conv' if p[3] == '0' else 'norm'}.{p[4]}"
    return {"upsample": "decoder.transpconvs", "heads": "decoder.seg_layers"}[p[0]] + f".{p[1]}.{p[2]}"


def _nnunet_plans(dim: int, dec: list[int]) -> dict:
    conv = "Conv2d" if dim == 2 else "Conv3d"
    k, s1, s2 = [3] * dim, [1] * dim, [2] * dim
    return {
        "dataset_name": "Dataset999_Fake", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2], "original_median_spacing_after_transp": [8.0, 1.5, 1.5],
        "original_median_shape_after_transp": [9, 40, 40],
        "foreground_intensity_properties_per_channel": {"0": {"max": 9.0, "mean": 1.0, "median": 1.0, "min": 0.0,
                                                              "percentile_00_5": 0.1, "percentile_99_5": 5.0,
                                                              "std": 2.0}},
        "configurations": {"base": {
            "data_identifier": "nnUNetPlans_x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": [32] * dim, "median_image_size_in_voxels": [40.0] * dim,
            "spacing": [1.5] * dim, "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 4, "features_per_stage": [4, 8, 16, 16], "conv_op": f"torch.nn.{conv}",
                                "kernel_sizes": [k] * 4, "strides": [s1, s2, s2, s2], "n_conv_per_stage": [1, 2, 2, 3],
                                "n_conv_per_stage_decoder": dec, "conv_bias": True,
                                "norm_op": f"torch.nn.InstanceNorm{dim}d",
                                "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None,
                                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": True},
            "2d" if dim == 2 else "3d_fullres": {"inherits_from": "base"}},
    }


def _fake_nnunet_model(tmp: Path, dim: int = 2, dec=(1, 2, 3), extra=None,
                       channels: int = 1) -> tuple[Path, torch.nn.Module]:
    """An nnU-Net-shaped model folder whose weights come from a random autoseg network (kept for comparison)."""
    config = "2d" if dim == 2 else "3d_fullres"
    folder = tmp / f"nnUNetTrainer__nnUNetPlans__{config}"
    (folder / "fold_0").mkdir(parents=True)
    plans = _nnunet_plans(dim, list(dec))
    names = {str(c): f"MRI{c}" for c in range(channels)}
    plans["foreground_intensity_properties_per_channel"] = {
        c: plans["foreground_intensity_properties_per_channel"]["0"] for c in names}
    plans["configurations"]["base"]["normalization_schemes"] = ["ZScoreNormalization"] * channels
    plans["configurations"]["base"]["use_mask_for_norm"] = [False] * channels
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": names, "file_ending": ".nii.gz",
                                                     "labels": {"background": 0, "a": 1, "b": 2},
                                                     "numTraining": 4}))
    torch.manual_seed(0)
    kw = dict(dim=dim, input_channels=channels, num_classes=3, n_stages=4, features_per_stage=[4, 8, 16, 16],
              kernel_sizes=[[3] * dim] * 4, strides=[[1] * dim] + [[2] * dim] * 3, n_conv_per_stage=[1, 2, 2, 3],
              n_conv_per_stage_decoder=list(dec)[::-1])
    net = build_network("PlainConvUNet", kw)
    for p in net.parameters():  # non-trivial norms and biases, so a swapped tensor would show
        torch.nn.init.normal_(p, 0, 0.3)
    weights = collections.OrderedDict()
    for k, v in net.state_dict().items():
        weights[_nnunet_name(k)] = v.clone()
        if k.startswith("encoder"):  # nnU-Net's duplicate registrations
            weights["decoder." + _nnunet_name(k)] = v.clone()
        if k.startswith(("encoder", "decoder")):
            weights[_nnunet_name(k).replace(".conv.", ".all_modules.0.").replace(".norm.", ".all_modules.1.")] = v
    ckpt = {"network_weights": weights, "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01}]},
            "grad_scaler_state": None, "logging": {"mean_fg_dice": [np.float32(0.5)], "lrs": [0.01]},
            "_best_ema": np.float64(0.5), "current_epoch": 3,
            "init_args": {"plans": plans, "configuration": config, "fold": 0, "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": tuple(range(dim))}
    if extra:
        ckpt.update(extra)
    torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
    return folder, net.eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_import_translates_plans_and_carries_weights(tmp_path, dim, capsys):
    """Plans translation and weight transfer on a model made here (its nnU-Net key names come from _nnunet_name,
    which mirrors the import; test_import_maps_every_weight checks the names against nnU-Net's own)."""
    folder, net = _fake_nnunet_model(tmp_path, dim)
    run = tmp_path / "run"
    assert main(["import-nnunet", str(folder), "--out", str(run)]) == 0
    assert "mirroring" not in capsys.readouterr().out  # nnU-Net mirrored along every axis, as autoseg does
    config = "2d" if dim == 2 else "3d_fullres"
    plans = json.loads((run / "plans.json").read_text())
    cfg = plans["configurations"][config]
    assert cfg["spacing"] == [1.5] * dim and cfg["patch_size"] == [32] * dim
    assert cfg["architecture"]["arch_kwargs"]["n_conv_per_stage_decoder"] == [3, 2, 1]
    assert cfg["resampling_data"] == {"order": 3, "separate_z": False, "order_z": 0}
    ck = torch.load(run / config / "fold_0" / "checkpoint_final.pt", weights_only=True)
    imported = build_network(ck["architecture"]["network_class_name"], ck["architecture"]["arch_kwargs"])
    imported.load_state_dict(ck["network_weights"])
    x = torch.randn((1, 1) + (32,) * dim)
    with torch.no_grad():
        for a, b in zip(net(x), imported.eval()(x)):
            assert torch.equal(a, b)
    assert (run / "nnunet_source" / "plans.json").is_file()


def test_malicious_checkpoint_is_refused_without_running(tmp_path):
    marker = tmp_path / "code_ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder, _ = _fake_nnunet_model(tmp_path, extra={"payload": Evil()})
    with pytest.raises(AutosegError, match="refused: the checkpoint holds .*system"):
        load_nnunet_checkpoint(folder / "fold_0" / "checkpoint_final.pth")
    assert main(["import-nnunet", str(folder), "--out", str(tmp_path / "run")]) == 2
    assert not marker.exists() and not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".run.*"))  # no half-built run left behind


def test_import_bad_inputs(tmp_path):
    folder, _ = _fake_nnunet_model(tmp_path)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["base"]["architecture"]["network_class_name"] = "x.ResidualEncoderUNet"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(AutosegError, match="ResidualEncoderUNet.*cannot be imported"):
        from autoseg.sharing.nnunet_import import import_nnunet_model
        import_nnunet_model(folder, tmp_path / "r1")
    assert main(["import-nnunet", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
    assert main(["import-nnunet", str(folder), "--out", str(tmp_path / "r3"), "-f", "4"]) == 2
    (tmp_path / "exists").mkdir()
    assert main(["import-nnunet", str(folder), "--out", str(tmp_path / "exists")]) == 2
    plans["configurations"]["base"]["architecture"]["network_class_name"] = "x.PlainConvUNet"
    plans["configurations"]["base"].pop("patch_size")
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(AutosegError, match="KeyError: 'patch_size'"):
        import_nnunet_model(folder, tmp_path / "r4")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(AutosegError, match="cannot be read"):
        load_nnunet_checkpoint(junk)


PLAIN_NETWORKS = [c for c in json.loads((REFS / "networks.json").read_text())["networks"]
                  if c["network_class_name"].endswith(".PlainConvUNet")]


@pytest.mark.parametrize("case", PLAIN_NETWORKS, ids=lambda c: c["label"])
def test_import_maps_every_weight(case):
    """Every parameter of nnU-Net's own PlainConvUNet (key list and shapes recorded from nnU-Net, from real 2d and
    3d plans and small hand-made ones) maps to exactly one parameter of the network the import builds from the
    same plans, with the same shape, and every parameter of that network is covered."""
    from autoseg.sharing.nnunet_import import _architecture

    keys = {k: torch.empty(s, device="meta") for k, s in case["state_dict"]}
    arch = _architecture({"network_class_name": case["network_class_name"], "arch_kwargs": case["arch_kwargs"]},
                         case["input_channels"], case["num_classes"], case["label"])
    with torch.device("meta"):
        ours = build_network(arch.network_class_name, dict(arch.arch_kwargs)).state_dict()
    mapped = convert_weights(keys, Path(case["label"]))
    assert sorted(mapped) == sorted(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    # every nnU-Net key was either mapped or is one of its duplicate registrations of a mapped module
    duplicates = [k for k in keys if ".all_modules." in k or k.startswith("decoder.encoder.")]
    assert len(mapped) + len(duplicates) == len(keys)


def test_plain_networks_cover_2d_and_3d_from_real_plans():
    assert {len(c["patch_size"]) for c in PLAIN_NETWORKS if "small" not in c["label"]} == {2, 3}


def test_imported_nnunet_model_predicts_nnunets_labels(tmp_path):
    """Known answer: a model trained by nnU-Net v2.8.1 (2d, fold 0), imported with `autoseg import-nnunet` and run
    with `autoseg predict`'s defaults (mirroring along both axes, tile step 0.5, as nnUNetv2_predict's defaults),
    gives nnUNetv2_predict's label maps on the input's grid. Not always voxel for voxel: nnU-Net sums the tiles'
    logits in float16 (predict_sliding_window_return_logits), autoseg in float32, so a voxel whose two best classes
    are within float16 rounding may flip (1 voxel of the 73,728 here). Every differing voxel must be such a near-tie
    in autoseg's probabilities (best two within 0.01), at most 0.1% of a case may differ, and Dice per label must
    be >= 0.99."""
    import SimpleITK as sitk

    run, pred = tmp_path / "run", tmp_path / "pred"
    assert main(["import-nnunet", str(MODEL / "nnUNetTrainer__nnUNetPlans__2d"), "--out", str(run)]) == 0
    assert main(["predict", str(run), "-i", str(MODEL / "imagesTs"), "-o", str(pred), "--device", "cpu",
                 "--save-probabilities"]) == 0
    refs = sorted((MODEL / "predictions_nnunet").glob("*.nii.gz"))
    assert len(refs) == 4
    for ref in refs:
        a, b = sitk.ReadImage(str(ref)), sitk.ReadImage(str(pred / ref.name))
        x, y = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
        assert set(np.unique(x)) == {0, 1, 2, 3}, f"{ref.name}: the reference model should find every label"
        assert a.GetSize() == b.GetSize() and a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
        assert np.allclose(a.GetDirection(), b.GetDirection())
        diff = x != y
        assert diff.sum() <= 0.001 * x.size, f"{ref.name}: {int(diff.sum())} of {x.size} voxels differ"
        prob = np.load(pred / ref.name.replace(".nii.gz", ".npz"))["probabilities"]
        assert prob.shape[1:] == x.shape
        gap = prob.max(axis=0) - np.take_along_axis(prob, x[None].astype(np.int64), axis=0)[0]
        assert np.all(gap[diff] < 0.01), f"{ref.name}: labels differ where autoseg is sure: gaps {gap[diff]}"
        for v in (1, 2, 3):
            dice = 2 * ((x == v) & (y == v)).sum() / ((x == v).sum() + (y == v).sum())
            assert dice >= 0.99, (ref.name, v, dice)


def test_imported_two_channel_model_cli_zip_and_python_agree(tmp_path):
    """A 3D two-channel model: CLI predict on channel files, the exported zip, and the Python Predictor (array
    with channels first, and one SimpleITK image per channel) give the same labels on the input's grid."""
    import SimpleITK as sitk

    from autoseg import Predictor

    folder, _ = _fake_nnunet_model(tmp_path, dim=3, channels=2)
    run = tmp_path / "run"
    assert main(["import-nnunet", str(folder), "--out", str(run)]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "m.zip")]) == 0
    rng = np.random.default_rng(0)
    chans = []
    (tmp_path / "imgs").mkdir()
    for c in range(2):
        im = sitk.GetImageFromArray(rng.normal(c, 1 + c, (12, 30, 26)).astype(np.float32))
        im.SetSpacing((1.2, 1.5, 2.0))
        im.SetOrigin((3.0, -4.0, 5.0))
        sitk.WriteImage(im, str(tmp_path / "imgs" / f"case_{c:04d}.nii.gz"))
        chans.append(im)
    assert main(["predict", str(tmp_path / "m.zip"), "-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "p"),
                 "--no-tta"]) == 0
    cli = sitk.ReadImage(str(tmp_path / "p" / "case.nii.gz"))
    ref = sitk.GetArrayFromImage(cli)
    assert ref.shape == (12, 30, 26) and len(np.unique(ref)) > 1  # random weights, but not a constant map
    pred = Predictor.from_run(run, device="cpu", mirror=False)
    assert pred.num_input_channels == 2 and pred.labels == {"background": 0, "a": 1, "b": 2}
    seg = pred.predict_image(chans)
    assert np.array_equal(sitk.GetArrayFromImage(seg), ref) and seg.GetOrigin() == cli.GetOrigin()
    arr = np.stack([sitk.GetArrayFromImage(c) for c in chans])
    assert np.array_equal(pred.predict(arr, chans[0].GetSpacing(), chans[0].GetOrigin()), ref)
    with pytest.raises(AutosegError, match="expects 2 channel"):
        pred.predict(arr[0], chans[0].GetSpacing())


def test_import_notes_when_nnunet_did_not_mirror(tmp_path, capsys):
    folder, _ = _fake_nnunet_model(tmp_path, extra={"inference_allowed_mirroring_axes": None})
    assert main(["import-nnunet", str(folder), "--out", str(tmp_path / "run")]) == 0
    assert "predict with --no-tta" in capsys.readouterr().out
