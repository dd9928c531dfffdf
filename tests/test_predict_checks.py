"""The checks predict makes on each case before allocating (the corpus drives them end to end through the CLI):
the memory a case needs against what there is, the spacing against the training range, and channel files the
model does not take."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from autoseg.core.errors import AutosegError
from autoseg.inference import predictor as P
from autoseg.io.images import read_case_images
from autoseg.networks import build_network
from autoseg.planner.plans import Plans


def _predictor(run, patch=None) -> P.Predictor:
    plans = Plans.load(run / "plans.json")
    cfg = plans.configuration("2d")
    if patch is not None:
        cfg = dataclasses.replace(cfg, patch_size=list(patch))
        plans = dataclasses.replace(plans, configurations={**plans.configurations, "2d": cfg})
    net = build_network(cfg.architecture.network_class_name, dict(cfg.architecture.arch_kwargs))
    return P.Predictor(plans, "2d", [net], [], torch.device("cpu"))


def test_a_3000_pixel_patch_counts_its_tiles_and_is_refused_beyond_the_memory_there_is(small_planned_run,
                                                                                       tiny_phantom, monkeypatch):
    data, geom = read_case_images(sorted((tiny_phantom / "imagesTs").glob("*.nii.gz"))[:1])
    small = _predictor(small_planned_run)
    big = _predictor(small_planned_run, (3000, 3000))
    need_small, _ = small.memory_needed(data.shape, geom)
    need, parts = big.memory_needed(data.shape, geom)
    assert need > 50 * need_small  # the tiles through the network, and the grid padded to the patch
    assert any("tile(s) of 3000 x 3000 through the network" in p for p in parts)
    monkeypatch.setattr(P, "available_memory", lambda device: need // 2)
    with pytest.raises(AutosegError, match=r"case c1: predicting it with 2d needs at least .* GB are available on cpu"):
        big.check_memory(data.shape, geom, "case c1")
    small.check_memory(data.shape, geom, "case c1")  # what the plan chose fits
    monkeypatch.setattr(P, "available_memory", lambda device: need * 2)
    big.check_memory(data.shape, geom, "case c1")  # refused for the memory, not for the patch


def test_spacing_far_outside_the_training_range_is_warned_about(small_planned_run, capsys):
    pred = _predictor(small_planned_run)
    pred.train_spacing = ((6.0, 1.8, 1.8), (9.8, 1.9, 1.9))
    geom = P.Geometry(3, (8, 32, 32), (9.0, 0.9, 0.9), (0.9, 0.9, 9.0), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pred.warn_spacing(geom, "case c1")  # twice finer: within the factor
    pred.warn_spacing(dataclasses.replace(geom, spacing=(90.0, 1.8, 1.8)), "case c1")  # a 2d model ignores z
    assert capsys.readouterr().err == ""
    pred.warn_spacing(dataclasses.replace(geom, spacing=(9.0, 0.3, 0.3)), "case c1")
    assert "warning: case c1: spacing (9, 0.3, 0.3) mm is 6x finer than the training images" in capsys.readouterr().err
    pred.warn_spacing(dataclasses.replace(geom, spacing=(9.0, 1.8, 9.5)), "case c2")
    assert "5x coarser" in capsys.readouterr().err


def test_an_array_given_to_the_python_predictor_is_checked_as_a_file_is(small_planned_run, monkeypatch, capsys):
    """``Predictor.predict(array)`` warns about a spacing far outside the training range, refuses a prediction
    that needs more memory than there is and a 2D image given to a 3D configuration, as ``predict`` does a file,
    before any network runs."""
    pred = _predictor(small_planned_run)
    pred.networks[0].set_deep_supervision(False)  # as a checkpoint's network is loaded for prediction
    pred.networks[0].eval()
    pred.train_spacing = ((9.0, 1.8, 1.8), (9.8, 1.9, 1.9))
    image = np.zeros((32, 32), np.float32)
    assert pred.predict(image, (1.8, 1.8)).shape == (32, 32)
    assert capsys.readouterr().err == ""
    assert pred.predict(image, (0.3, 0.3)).shape == (32, 32)
    assert "warning: predict: spacing (0.3, 0.3) mm is 6x finer than the training images" in capsys.readouterr().err
    monkeypatch.setattr(P, "available_memory", lambda device: 1000)
    with pytest.raises(AutosegError, match=r"^predict: predicting it with 2d needs at least .* available on cpu"):
        pred.predict(image, (1.8, 1.8))
    monkeypatch.undo()
    volume = _predictor(small_planned_run, (8, 32, 32))  # a 3D patch: the configuration is 3D
    with pytest.raises(AutosegError, match="^predict: the array is a 2D image, but configuration 2d is 3D"):
        volume.predict(image, (1.8, 1.8))


def test_a_channel_file_the_model_does_not_take_is_refused(tiny_phantom, tmp_path):
    first = sorted((tiny_phantom / "imagesTs").glob("*_0000.nii.gz"))[0]
    case = first.name[: -len("_0000.nii.gz")]
    shutil.copy(first, tmp_path / first.name)
    assert P.discover_inputs(tmp_path / first.name, ".nii.gz", 1) == [(case, [tmp_path / first.name])]
    shutil.copy(first, tmp_path / f"{case}_0001.nii.gz")
    assert len(P.discover_inputs(tmp_path, ".nii.gz", 2)) == 1  # a 2-channel model takes both
    for inp in (tmp_path, tmp_path / first.name):  # a folder, or the first channel's file
        with pytest.raises(AutosegError, match=rf"case {case}: image files _0000 to _0001, but the model declares 1 "
                                               r"channel\(s\)"):
            P.discover_inputs(inp, ".nii.gz", 1)
