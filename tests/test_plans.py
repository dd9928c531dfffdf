"""Typed plans: plans.json written by main (version 1) still loads, the round trip is exact, and every nested level
rejects unknown, missing and ill-typed keys with an AutosegError naming plans.json, the configuration and the key."""
import copy
import json
from pathlib import Path

import pytest

from autoseg.core.errors import AutosegError
from autoseg.planner.plans import LEGACY_KEYS, PLANS_VERSION, Plans

DATA = Path(__file__).parent / "data"
REMOVED_TOP = LEGACY_KEYS[1]["plans"]
REMOVED_CFG = LEGACY_KEYS[1]["configuration"]


def _main(name="plans_main_phantom_budget"):
    return json.loads((DATA / f"{name}.json").read_text())


ADDED_CFG = {"previous_stage": None, "next_stage": None, "inherits_from": None}  # cascade wiring (version 2)


def _without_removed(d: dict) -> dict:
    """Main's version-1 plans as version 2 writes them: less the keys nothing read, plus the keys added since
    (the preset, the cascade wiring, the budget's precision) at their defaults."""
    d = {k: v for k, v in d.items() if k not in REMOVED_TOP}
    d["configurations"] = {n: {**{k: v for k, v in c.items() if k not in REMOVED_CFG}, **ADDED_CFG}
                           for n, c in d["configurations"].items()}
    for c in d["configurations"].values():  # a budget record from before the precision field: timed in fp32
        if c.get("budget") is not None:
            c["budget"] = {**c["budget"], "precision": "fp32"}
    d["plans_version"] = PLANS_VERSION
    d["preset"] = "default"
    return d


@pytest.mark.parametrize("name", ["plans_main_phantom", "plans_main_phantom_budget"])
def test_mains_plans_load_and_round_trip(name, tmp_path):
    """A version-1 plans.json from main loads; saved again it is the same JSON less the keys nothing read."""
    v1 = _main(name)
    plans = Plans.from_dict(copy.deepcopy(v1))
    assert plans.plans_version == PLANS_VERSION
    plans.save(tmp_path / "plans.json")
    v2 = json.loads((tmp_path / "plans.json").read_text())
    assert v2 == _without_removed(v1)
    for name_, c in v2["configurations"].items():  # and in the same order, for people reading the file
        old = v1["configurations"][name_]
        assert list(c) == [k for k in old if k not in REMOVED_CFG] + list(ADDED_CFG)
        assert list(c["architecture"]["arch_kwargs"]) == list(old["architecture"]["arch_kwargs"])
    assert Plans.load(tmp_path / "plans.json") == plans
    cfg = plans.configuration("3d_fullres")
    assert cfg.resampling_data.separate_z is True and cfg.resampling_data["separate_z"] is True
    assert dict(cfg.architecture.arch_kwargs) == v1["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]


def test_planner_writes_mains_plans_for_the_phantom(tiny_phantom, tmp_path):
    """Differential: planning the phantom gives main's plans (tests/data, made at 944fb42) less the removed keys."""
    from autoseg.api import plan

    plan(tiny_phantom, tmp_path / "run", preprocess_after=False, num_workers=1)
    got = json.loads((tmp_path / "run" / "plans.json").read_text())
    want = _without_removed(_main("plans_main_phantom"))
    got["dataset_dir"] = want["dataset_dir"]
    # Changed on purpose since main, to follow nnU-Net's rules (benchmarks/plan_diff checks them against nnU-Net):
    # intensity statistics weight every case equally, the original median shape is taken before resampling, and the
    # reasons describe those rules.
    for d in (got, want):
        for key in ("foreground_intensity_properties_per_channel", "original_median_shape_after_transp"):
            del d[key]
        for c in d["configurations"].values():
            del c["reasons"]
    assert got == want


def _edit(path: list, value=None, delete=False, rename=None):
    d = _main()
    parent = d
    for p in path[:-1]:
        parent = parent[p]
    if rename:
        parent[rename] = parent.pop(path[-1])
    elif delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return d


CFG = ["configurations", "3d_fullres"]
TYPOS = [  # (where the key lives, the key to misspell, the message's location)
    ([], "labels", "plans.json: unknown"),
    (CFG, "batch_dice", "configurations.3d_fullres: unknown"),
    (CFG + ["resampling_data"], "separate_z", "configurations.3d_fullres.resampling_data: unknown"),
    (CFG + ["resampling_label"], "order_z", "configurations.3d_fullres.resampling_label: unknown"),
    (CFG + ["resampling_probabilities"], "separate_z", "configurations.3d_fullres.resampling_probabilities: unknown"),
    (CFG + ["architecture"], "arch_kwargs", "configurations.3d_fullres.architecture: unknown"),
    (CFG + ["architecture", "arch_kwargs"], "strides", "configurations.3d_fullres.architecture.arch_kwargs: unknown"),
    (CFG + ["budget"], "device", "configurations.3d_fullres.budget: unknown"),
    (CFG + ["budget", "schedule"], "epochs", "configurations.3d_fullres.budget.schedule: unknown"),
    (CFG + ["budget", "candidates", 0], "chosen", r"configurations.3d_fullres.budget.candidates\[0\]: unknown"),
    (["foreground_intensity_properties_per_channel", "0"], "mean",
     "plans.json: foreground_intensity_properties_per_channel.0: unknown"),
]


@pytest.mark.parametrize("where,key,message", TYPOS)
def test_a_typo_at_any_level_is_named(where, key, message):
    d = _edit(where + [key], rename=key[:-1] + key[-1].upper() if key != "separate_z" else "seperate_z")
    with pytest.raises(AutosegError, match=message):
        Plans.from_dict(d, "plans.json")


@pytest.mark.parametrize("path,value,message", [
    (CFG + ["resampling_data", "separate_z"], "yes", r"resampling_data.separate_z: expected true or false"),
    (CFG + ["resampling_data", "order"], 7, r"resampling_data.order: spline order must be 0..5"),
    (CFG + ["resampling_label", "one_hot"], False, r"resampling_label.one_hot: labels are resampled one-hot"),
    (CFG + ["spacing"], [1.0, 2.0], r"3d_fullres.spacing: expected a list of 3 entries"),
    (CFG + ["patch_size"], [12, 48, 0], r"3d_fullres.patch_size\[2\]: expected an integer >= 1"),
    (CFG + ["batch_size"], 2.5, r"3d_fullres.batch_size: expected an integer"),
    (CFG + ["patch_size"], [12, 48, 44], r"3d_fullres.patch_size: \[12, 48, 44\] must be divisible by \[2, 8, 8\]"),
    (CFG + ["patch_size"], [12, 48, 8192], r"3d_fullres.patch_size: \[12, 48, 8192\] must be .*at most 4096"),
    (CFG + ["normalization_schemes"], ["ZScore"], r"normalization_schemes\[0\]: expected one of"),
    (CFG + ["use_mask_for_norm"], [False, False], r"3d_fullres.use_mask_for_norm: 2 entries for 1 input"),
    (CFG + ["architecture", "network_class_name"], "UNet",
     r"3d_fullres.architecture.network_class_name: network 'UNet' is not registered; known: "
     r"PlainConvUNet, ResidualEncoderUNet"),
    (CFG + ["architecture", "arch_kwargs", "num_classes"], 3, r"input_channels 1 and num_classes 3 must be"),
    (CFG + ["architecture", "arch_kwargs", "strides"], [[1, 1, 1]], r"arch_kwargs.strides: expected a list of 4"),
    (CFG + ["budget", "schedule", "epochs"], 0, r"budget.schedule.epochs: expected an integer >= 1"),
    (CFG + ["budget", "device"], None, r"budget.device: expected a string"),
    (["transpose_backward"], [2, 0, 1], r"transpose_forward/backward"),
    (["labels"], {"background": 0, "RV": 1, "MYO": 1, "LV": 3}, r"labels: values must be distinct"),
    (["channel_names"], {"1": "MRI"}, r"channel_names: keys must be '0'..'0'"),
    (["plans_version"], 3, r"plans_version 3 is not supported"),
    (["foreground_intensity_properties_per_channel", "0", "percentile_99_5"], 1e6,
     r"foreground_intensity_properties_per_channel.0: inconsistent intensity statistics"),
    (["configurations"], [], r"configurations: expected an object"),
])
def test_invalid_values_are_named(path, value, message):
    with pytest.raises(AutosegError, match=r"plans\.json: .*" + message):
        Plans.from_dict(_edit(path, value), "plans.json")


@pytest.mark.parametrize("path", [CFG + ["batch_dice"], CFG + ["resampling_data", "order_z"], ["file_ending"],
                                  CFG + ["architecture", "arch_kwargs", "n_conv_per_stage"]])
def test_missing_keys_are_named(path):
    with pytest.raises(AutosegError, match=rf"missing key\(s\) \['{path[-1]}'\]"):
        Plans.from_dict(_edit(path, delete=True), "plans.json")


@pytest.mark.parametrize("name", ["../3d_fullres", "a/b", "3d.fullres", "..", "-x", ""])
def test_configuration_names_must_be_safe(name):
    d = _main()
    d["configurations"][name] = d["configurations"].pop("2d")
    with pytest.raises(AutosegError, match="configuration name .* is not allowed"):
        Plans.from_dict(d, "plans.json")


def test_version_2_refuses_the_keys_version_1_had():
    d = _without_removed(_main())
    Plans.from_dict(copy.deepcopy(d))
    d["configurations"]["2d"]["data_identifier"] = "x"
    with pytest.raises(AutosegError, match=r"configurations.2d: unknown key\(s\) \['data_identifier'\]"):
        Plans.from_dict(d, "plans.json")


def test_a_plan_built_in_code_is_validated_too():
    plans = Plans.from_dict(_main())
    cfg = plans.configuration("2d")
    import dataclasses

    with pytest.raises(AutosegError, match="resampling_data.separate_z: expected true or false"):
        dataclasses.replace(cfg, resampling_data={"order": 3, "separate_z": "no", "order_z": 0})
    with pytest.raises(AutosegError, match=r"architecture.arch_kwargs: unknown key\(s\) \['n_conv'\]"):
        dataclasses.replace(cfg.architecture, arch_kwargs={**dict(cfg.architecture.arch_kwargs), "n_conv": 2})
    with pytest.raises(AutosegError, match="configuration name '../x' is not allowed"):
        dataclasses.replace(plans, configurations={"../x": cfg})
