"""Plans: frozen dataclasses that round-trip to plain, versioned JSON (nnU-Net's key names).

Every level (the plans, each configuration, its resampling settings, its architecture and the network's arguments,
the budget record, the intensity properties) is a typed record. Loading rejects unknown, missing and ill-typed keys
with an AutosegError naming plans.json, the configuration and the key, so a typo in a hand-edited plan is caught at
load instead of becoming a KeyError in one stage and a silent default in another.

Version 2 dropped keys that nothing read (``planning_seconds``, ``budget_seconds`` and ``budget_device`` at the
top, ``data_identifier`` and ``feature_map_estimate`` per configuration: the budget record holds the budget, and the
network reports its own memory estimate); version-1 files load with those keys ignored.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import AutosegError
from ..core.jsonio import load_json, save_json
from ..core.records import Record, as_bool, as_float, as_floats, as_int, as_ints, as_list, as_str
from ..io.labels import LabelSpec
from ..networks import network_args, network_class

PLANS_VERSION = 2
LEGACY_KEYS = {1: {"plans": ("planning_seconds", "budget_seconds", "budget_device"),
                   "configuration": ("data_identifier", "feature_map_estimate")}}
NORMALIZATION_SCHEMES = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RGBTo01Normalization",
                         "RescaleTo01Normalization")
PRECISIONS = ("fp32", "bf16")
PRESETS = ("default", "resenc-m", "resenc-l", "resenc-xl")
MAX_PATCH_EDGE = 4096
"""Voxels per patch axis at most: a 2D patch of 4096^2 at batch 2 already needs gigabytes of feature maps, and a
hand-edited [100000, 100000] would otherwise be found out by a data worker's allocation traceback."""
CONFIGURATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
"""Configuration names become folder names (run/<configuration>/, preprocessed/<configuration>/): no separators,
no dots, no leading dash."""


def _set(obj: Any, **values: Any) -> None:
    for k, v in values.items():
        object.__setattr__(obj, k, v)


@dataclass(frozen=True)
class ResamplingSettings(Record):
    """Spline order in-plane and ``order_z`` along a coarse axis resampled on its own. Whether a case's coarse axis
    is resampled on its own is decided per case (``heuristics.separate_z_decision``, nnU-Net's rule);
    ``separate_z`` records whether the configuration's target spacing is anisotropic (training augments slice by
    slice, the budget planner counts tiles so)."""
    order: int
    separate_z: bool
    order_z: int

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        kw = {"order": as_int(d["order"], f"{where}.order", 0), "separate_z": as_bool(d["separate_z"],
              f"{where}.separate_z"), "order_z": as_int(d["order_z"], f"{where}.order_z", 0)}
        for k in ("order", "order_z"):
            if kw[k] > 5:
                raise AutosegError(f"{where}.{k}: spline order must be 0..5, got {kw[k]}")
        return kw


@dataclass(frozen=True)
class LabelResampling(ResamplingSettings):
    """Labels are always resampled as one-hot probabilities (then argmax); ``one_hot`` records that and must be
    true, so a plan asking otherwise is refused rather than ignored."""
    one_hot: bool = True

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        kw = super()._parse(d, where)
        if "one_hot" in d and as_bool(d["one_hot"], f"{where}.one_hot") is not True:
            raise AutosegError(f"{where}.one_hot: labels are resampled one-hot only; set it to true")
        return kw


@dataclass(frozen=True)
class Architecture(Record):
    """A registered network's name and its typed arguments (a dict given in code is parsed and validated)."""
    network_class_name: str
    arch_kwargs: Any

    def __post_init__(self) -> None:
        _set(self, arch_kwargs=network_args(self.network_class_name, self.arch_kwargs, "architecture.arch_kwargs"))

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Architecture":
        cls.check_keys(d, where)
        name = as_str(d["network_class_name"], f"{where}.network_class_name")
        network_class(name, f"{where}.network_class_name")  # registered, by autoseg or a plugin
        return cls(name, network_args(name, d["arch_kwargs"], f"{where}.arch_kwargs"))


@dataclass(frozen=True)
class Schedule(Record):
    epochs: int
    iters_per_epoch: int
    val_iters: int

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        return {f.name: as_int(d[f.name], f"{where}.{f.name}", 1) for f in fields(cls)}


@dataclass(frozen=True)
class CandidateRecord(Record):
    """One candidate the budget planner considered, with its (measured or predicted) step time."""
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    base_features: int
    gmacs_per_sample: float
    seconds_per_step: float
    measured: bool
    steps_in_budget: int
    chosen: bool

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        w = where + "."
        return {"spacing": list(as_floats(d["spacing"], w + "spacing", lo=0.0)),
                "patch_size": list(as_ints(d["patch_size"], w + "patch_size", lo=1)),
                "batch_size": as_int(d["batch_size"], w + "batch_size", 1),
                "base_features": as_int(d["base_features"], w + "base_features", 1),
                "gmacs_per_sample": as_float(d["gmacs_per_sample"], w + "gmacs_per_sample", 0.0),
                "seconds_per_step": as_float(d["seconds_per_step"], w + "seconds_per_step", 0.0),
                "measured": as_bool(d["measured"], w + "measured"), "chosen": as_bool(d["chosen"], w + "chosen"),
                # negative when the final validation alone would overrun the budget
                "steps_in_budget": as_int(d["steps_in_budget"], w + "steps_in_budget")}


@dataclass(frozen=True)
class BudgetRecord(Record):
    """What `plan --budget` measured and chose for a configuration; training follows ``budget_seconds`` and
    ``schedule``, and plans_table prints the rest."""
    budget_seconds: float
    device: str
    seconds_per_step: float
    train_seconds: float
    final_validation_seconds: float
    expected_steps: int
    schedule: Schedule
    min_steps: int
    candidates: list[CandidateRecord]
    # the arithmetic the steps were timed in, and training and inference on a CPU then use: "bf16" (autocast) where
    # this CPU ran the timed step faster in it, else "fp32" (plans from before this field: "fp32")
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if isinstance(self.schedule, Mapping) and not isinstance(self.schedule, Schedule):
            _set(self, schedule=Schedule.from_dict(dict(self.schedule), "budget.schedule"))
        _set(self, candidates=[c if isinstance(c, CandidateRecord) else CandidateRecord.from_dict(
            c, f"budget.candidates[{i}]") for i, c in enumerate(self.candidates)])

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        w = where + "."
        kw = {k: as_float(d[k], w + k, 0.0) for k in ("budget_seconds", "seconds_per_step", "train_seconds",
                                                      "final_validation_seconds")}
        kw.update(device=as_str(d["device"], w + "device"), schedule=Schedule.from_dict(d["schedule"], w + "schedule"),
                  expected_steps=as_int(d["expected_steps"], w + "expected_steps", 0),
                  min_steps=as_int(d["min_steps"], w + "min_steps", 0),
                  precision=as_str(d.get("precision", "fp32"), w + "precision", list(PRECISIONS)),
                  candidates=[CandidateRecord.from_dict(c, f"{w}candidates[{i}]")
                              for i, c in enumerate(as_list(d["candidates"], w + "candidates"))])
        return kw

    def summary(self) -> str:
        timed = sum(c.measured for c in self.candidates)
        return (f"budget {self.budget_seconds:.0f}s on {self.device}: {self.seconds_per_step:.3f}s/step in "
                f"{self.precision} ({timed} of {len(self.candidates)} candidates timed), ~{self.expected_steps} steps "
                f"(at least {self.min_steps} wanted) in {self.train_seconds:.0f}s, "
                f"{self.final_validation_seconds:.0f}s for the final validation; schedule {self.schedule.epochs} x "
                f"{self.schedule.iters_per_epoch}")


@dataclass(frozen=True)
class Recommendation(Record):
    """The configuration a budget plan recommends training (``autoseg train`` without ``-c`` trains it), with the
    reasons of the rule that chose it (``autoseg.planner.budget.recommend``)."""
    configuration: str
    reasons: list[str]

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        w = where + "."
        return {"configuration": check_configuration_name(d["configuration"], w + "configuration"),
                "reasons": [as_str(r, f"{w}reasons[{i}]") for i, r in enumerate(as_list(d["reasons"],
                                                                                         w + "reasons"))]}


@dataclass(frozen=True)
class IntensityProperties(Record):
    """Foreground intensity statistics of one channel (CT normalisation clips to the percentiles)."""
    mean: float
    median: float
    std: float
    min: float
    max: float
    percentile_99_5: float
    percentile_00_5: float

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        """The statistics must be consistent (min <= 0.5th percentile <= median <= 99.5th <= max, the mean within
        [min, max], std >= 0): a hand-edited or damaged value is refused rather than used to clip CT images."""
        kw = {f.name: as_float(d[f.name], f"{where}.{f.name}") for f in fields(cls)}
        order = ("min", "percentile_00_5", "median", "percentile_99_5", "max")
        tol = 1e-5 * max(1.0, abs(kw["min"]), abs(kw["max"]))  # float32 statistics
        ok = all(kw[a] <= kw[b] + tol for a, b in zip(order, order[1:]))
        if not ok or not kw["min"] - tol <= kw["mean"] <= kw["max"] + tol or kw["std"] < 0:
            raise AutosegError(f"{where}: inconsistent intensity statistics {kw} (need min <= percentile_00_5 <= "
                               "median <= percentile_99_5 <= max, min <= mean <= max, std >= 0); re-run `autoseg plan`")
        return kw


def _record(cls: type, v: Any, where: str) -> Any:
    """``v`` as a ``cls`` record: records pass, dicts (from code that builds plans) are parsed."""
    return v if isinstance(v, cls) else cls.from_dict(dict(v), where)


@dataclass(frozen=True)
class ConfigurationPlan(Record):
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    median_image_size_in_voxels: list[float]
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    resampling_data: ResamplingSettings
    resampling_label: LabelResampling
    resampling_probabilities: ResamplingSettings
    architecture: Architecture
    batch_dice: bool
    reasons: list[str] = field(default_factory=list)
    budget: BudgetRecord | None = None  # set by `plan --budget`: timings, chosen candidate and schedule
    # cascade wiring (nnU-Net's names): 3d_lowres -> next_stage 3d_cascade_fullres; 3d_cascade_fullres ->
    # previous_stage 3d_lowres (it is 3d_fullres, inherits_from says so, fed the low-res prediction as well)
    previous_stage: str | None = None
    next_stage: str | None = None
    inherits_from: str | None = None

    def __post_init__(self) -> None:
        _set(self, resampling_data=_record(ResamplingSettings, self.resampling_data, "resampling_data"),
             resampling_label=_record(LabelResampling, self.resampling_label, "resampling_label"),
             resampling_probabilities=_record(ResamplingSettings, self.resampling_probabilities,
                                              "resampling_probabilities"))
        if self.budget is not None:
            _set(self, budget=_record(BudgetRecord, self.budget, "budget"))

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    @classmethod
    def from_dict(cls, d: Any, where: str, version: int = PLANS_VERSION) -> "ConfigurationPlan":
        cls.check_keys(d, where, LEGACY_KEYS.get(version, {}).get("configuration", ()))
        return cls(**cls._parse(d, where))

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        w = where + "."
        arch = Architecture.from_dict(d["architecture"], w + "architecture")
        dim = arch.arch_kwargs.dim
        kw = {"spacing": list(as_floats(d["spacing"], w + "spacing", dim, 1e-9)),
              "patch_size": list(as_ints(d["patch_size"], w + "patch_size", dim, 1)),
              "batch_size": as_int(d["batch_size"], w + "batch_size", 1),
              "median_image_size_in_voxels": list(as_floats(d["median_image_size_in_voxels"],
                                                            w + "median_image_size_in_voxels", dim, 0.0)),
              "normalization_schemes": [as_str(v, f"{w}normalization_schemes[{i}]", NORMALIZATION_SCHEMES)
                                        for i, v in enumerate(as_list(d["normalization_schemes"],
                                                                      w + "normalization_schemes"))],
              "use_mask_for_norm": [as_bool(v, f"{w}use_mask_for_norm[{i}]")
                                    for i, v in enumerate(as_list(d["use_mask_for_norm"], w + "use_mask_for_norm"))],
              "resampling_data": ResamplingSettings.from_dict(d["resampling_data"], w + "resampling_data"),
              "resampling_label": LabelResampling.from_dict(d["resampling_label"], w + "resampling_label"),
              "resampling_probabilities": ResamplingSettings.from_dict(d["resampling_probabilities"],
                                                                       w + "resampling_probabilities"),
              "architecture": arch, "batch_dice": as_bool(d["batch_dice"], w + "batch_dice"),
              "reasons": [as_str(r, f"{w}reasons[{i}]") for i, r in enumerate(as_list(d.get("reasons", []),
                                                                                       w + "reasons"))]}
        if d.get("budget") is not None:
            kw["budget"] = BudgetRecord.from_dict(d["budget"], w + "budget")
        for key in ("previous_stage", "next_stage", "inherits_from"):
            if d.get(key) is not None:
                kw[key] = check_configuration_name(d[key], w + key)
        if max(kw["patch_size"]) > MAX_PATCH_EDGE:
            raise AutosegError(f"{w}patch_size: {kw['patch_size']} must be positive integers (at most "
                               f"{MAX_PATCH_EDGE}); re-plan instead of editing plans.json")
        divisible = [math.prod(axis) for axis in zip(*arch.arch_kwargs.strides)]
        if any(p % k for p, k in zip(kw["patch_size"], divisible)):
            raise AutosegError(f"{w}patch_size: {kw['patch_size']} must be divisible by {divisible} per axis (the "
                               "product of the network's strides), or the skip connections do not line up")
        return kw

    def check_channels(self, n: int, num_classes: int, where: str) -> None:
        """The per-channel lists and the network's input and output widths must match the dataset."""
        for key in ("normalization_schemes", "use_mask_for_norm"):
            if len(getattr(self, key)) != n:
                raise AutosegError(f"{where}.{key}: {len(getattr(self, key))} entries for {n} input channel(s)")
        a = self.architecture.arch_kwargs
        if a.input_channels != n or a.num_classes != num_classes:
            raise AutosegError(f"{where}.architecture.arch_kwargs: input_channels {a.input_channels} and num_classes "
                               f"{a.num_classes} must be {n} (channels) and {num_classes} (labels)")


@dataclass(frozen=True)
class Plans(Record):
    plans_version: int
    dataset_name: str
    dataset_dir: str
    num_input_channels: int
    labels: dict[str, int | list[int]]  # a list of values is a region (sigmoid output)
    channel_names: dict[str, str]
    file_ending: str
    transpose_forward: list[int]
    transpose_backward: list[int]
    original_median_spacing_after_transp: list[float]
    original_median_shape_after_transp: list[float]
    gpu_memory_target_gb: float
    foreground_intensity_properties_per_channel: dict[str, IntensityProperties]
    configurations: dict[str, ConfigurationPlan]
    preset: str = "default"  # planner preset: default | resenc-m | resenc-l | resenc-xl
    regions_class_order: list[int] | None = None  # region labels: the value each region writes, in order
    recommendation: Recommendation | None = None  # set by `plan --budget`: the configuration `train` trains by default

    def __post_init__(self) -> None:
        for name in self.configurations:
            check_configuration_name(name)
        if self.recommendation is not None:
            _set(self, recommendation=_record(Recommendation, self.recommendation, "recommendation"))
        _set(self, foreground_intensity_properties_per_channel={
            k: _record(IntensityProperties, v, f"foreground_intensity_properties_per_channel.{k}")
            for k, v in self.foreground_intensity_properties_per_channel.items()})

    @property
    def label_spec(self) -> LabelSpec:
        return LabelSpec.parse(self.labels, self.regions_class_order, "plans.json")

    @property
    def num_classes(self) -> int:
        """The network's output channels (regions, or labels without ignore)."""
        return self.label_spec.num_outputs

    def configuration(self, name: str) -> ConfigurationPlan:
        if name not in self.configurations:
            raise AutosegError(f"configuration {name!r} is not in the plans; planned: {sorted(self.configurations)}")
        return self.configurations[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain-label plans carry no regions_class_order key (they stay as they were before regions), and plans
        without a budget no recommendation key."""
        d = super().to_dict()
        for key in ("regions_class_order", "recommendation"):
            if d.get(key) is None:
                d.pop(key, None)
        return d

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, d: Any, where: str = "plans.json") -> "Plans":
        version = d.get("plans_version") if isinstance(d, dict) else None
        if version not in (PLANS_VERSION, *LEGACY_KEYS):
            raise AutosegError(f"{where}: plans_version {version} is not supported (this autoseg reads versions "
                               f"{sorted({PLANS_VERSION, *LEGACY_KEYS})}); re-run `autoseg plan`")
        cls.check_keys(d, where, LEGACY_KEYS.get(version, {}).get("plans", ()))
        kw = cls._parse(d, where)
        for name in as_dict(d["configurations"], f"{where}: configurations"):
            check_configuration_name(name, where)
        kw["configurations"] = {k: ConfigurationPlan.from_dict(v, f"{where}: configurations.{k}", version)
                                for k, v in d["configurations"].items()}
        if d.get("recommendation") is not None:
            rec = Recommendation.from_dict(d["recommendation"], f"{where}: recommendation")
            if rec.configuration not in kw["configurations"]:
                raise AutosegError(f"{where}: recommendation.configuration {rec.configuration!r} is not planned; "
                                   f"planned: {sorted(kw['configurations'])}")
            kw["recommendation"] = rec
        outputs = kw.pop("_outputs")  # regions, or labels without ignore
        for k, c in kw["configurations"].items():
            c.check_channels(kw["num_input_channels"], outputs, f"{where}: configurations.{k}")
        return cls(**kw)

    @classmethod
    def _parse(cls, d: dict, where: str) -> dict:
        w = where + ": "
        n = as_int(d["num_input_channels"], w + "num_input_channels", 1)
        spec = LabelSpec.parse(as_dict(d["labels"], w + "labels"), d.get("regions_class_order"), where)
        rco = list(spec.regions_class_order) if spec.regions_class_order else None
        channels = {k: as_str(v, f"{w}channel_names.{k}") for k, v in as_dict(d["channel_names"],
                                                                             w + "channel_names").items()}
        if sorted(channels) != sorted(str(c) for c in range(n)):
            raise AutosegError(f"{w}channel_names: keys must be '0'..'{n - 1}' for {n} channel(s), got "
                               f"{sorted(channels)}")
        fwd = list(as_ints(d["transpose_forward"], w + "transpose_forward", 3, 0))
        bwd = list(as_ints(d["transpose_backward"], w + "transpose_backward", 3, 0))
        if sorted(fwd) != [0, 1, 2] or [fwd[i] for i in bwd] != [0, 1, 2]:
            raise AutosegError(f"{w}transpose_forward/backward: {fwd} and {bwd} must be inverse permutations of "
                               "0, 1, 2")
        props = as_dict(d["foreground_intensity_properties_per_channel"],
                        w + "foreground_intensity_properties_per_channel")
        return {"plans_version": PLANS_VERSION, "dataset_name": as_str(d["dataset_name"], w + "dataset_name"),
                "preset": as_str(d.get("preset", "default"), w + "preset", PRESETS),
                "dataset_dir": as_str(d["dataset_dir"], w + "dataset_dir"), "num_input_channels": n,
                "labels": spec.to_json(), "regions_class_order": rco, "_outputs": spec.num_outputs,
                "channel_names": channels,
                "file_ending": as_str(d["file_ending"], w + "file_ending"),
                "transpose_forward": fwd, "transpose_backward": bwd,
                "original_median_spacing_after_transp": list(as_floats(
                    d["original_median_spacing_after_transp"], w + "original_median_spacing_after_transp", 3, 0.0)),
                "original_median_shape_after_transp": list(as_floats(
                    d["original_median_shape_after_transp"], w + "original_median_shape_after_transp", 3, 0.0)),
                "gpu_memory_target_gb": as_float(d["gpu_memory_target_gb"], w + "gpu_memory_target_gb", 0.0),
                "foreground_intensity_properties_per_channel": {
                    k: IntensityProperties.from_dict(v, f"{w}foreground_intensity_properties_per_channel.{k}")
                    for k, v in props.items()}}

    @staticmethod
    def load(path: str | Path) -> "Plans":
        return Plans.from_dict(load_json(path), str(path))


def as_dict(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise AutosegError(f"{where}: expected an object, got {v!r}")
    return v


def check_configuration_name(name: Any, where: str = "plans") -> str:
    """Configuration names are folder names: letters, digits, '_' and '-' only (no '/', no '..')."""
    if not isinstance(name, str) or not CONFIGURATION_NAME.fullmatch(name):
        raise AutosegError(f"{where}: configuration name {name!r} is not allowed; use letters, digits, '_' and '-' "
                           "(it names folders in the run)")
    return name
