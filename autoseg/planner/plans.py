"""Plans: frozen dataclasses that round-trip to plain, versioned JSON (nnU-Net's key names).

Loading rejects unknown keys with a message that names them, so a typo in a hand-edited plan is caught
instead of silently ignored.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..utils import AutosegError, load_json, save_json

PLANS_VERSION = 1


def _check_keys(cls, d: dict, where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise AutosegError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    missing = sorted(f.name for f in fields(cls)
                     if f.name not in d and f.default is MISSING and f.default_factory is MISSING)
    if missing:
        raise AutosegError(f"{where}: missing key(s) {missing}")


@dataclass(frozen=True)
class Architecture:
    network_class_name: str
    arch_kwargs: dict

    @staticmethod
    def from_dict(d: dict, where: str) -> "Architecture":
        _check_keys(Architecture, d, where)
        return Architecture(d["network_class_name"], dict(d["arch_kwargs"]))


@dataclass(frozen=True)
class ConfigurationPlan:
    data_identifier: str
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    median_image_size_in_voxels: list[float]
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    resampling_data: dict
    resampling_label: dict
    resampling_probabilities: dict
    architecture: Architecture
    batch_dice: bool
    feature_map_estimate: int
    reasons: list[str] = field(default_factory=list)
    budget: dict | None = None  # set by `plan --budget`: timings, chosen candidate and schedule
    # cascade wiring (nnU-Net's names): 3d_lowres -> next_stage 3d_cascade_fullres; 3d_cascade_fullres ->
    # previous_stage 3d_lowres (it is 3d_fullres, inherits_from says so, fed the low-res prediction as well)
    previous_stage: str | None = None
    next_stage: str | None = None
    inherits_from: str | None = None

    @property
    def dim(self) -> int:
        return len(self.patch_size)

    @staticmethod
    def from_dict(d: dict, where: str) -> "ConfigurationPlan":
        _check_keys(ConfigurationPlan, d, where)
        kw = dict(d)
        kw["architecture"] = Architecture.from_dict(d["architecture"], where + ".architecture")
        return ConfigurationPlan(**kw)


@dataclass(frozen=True)
class Plans:
    plans_version: int
    dataset_name: str
    dataset_dir: str
    num_input_channels: int
    labels: dict[str, int]
    channel_names: dict[str, str]
    file_ending: str
    transpose_forward: list[int]
    transpose_backward: list[int]
    original_median_spacing_after_transp: list[float]
    original_median_shape_after_transp: list[float]
    gpu_memory_target_gb: float
    foreground_intensity_properties_per_channel: dict[str, dict[str, float]]
    configurations: dict[str, ConfigurationPlan]
    preset: str = "default"  # planner preset: default | resenc-m | resenc-l | resenc-xl
    planning_seconds: float = 0.0
    budget_seconds: float | None = None
    budget_device: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def configuration(self, name: str) -> ConfigurationPlan:
        if name not in self.configurations:
            raise AutosegError(f"configuration {name!r} is not in the plans; planned: {sorted(self.configurations)}")
        return self.configurations[name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @staticmethod
    def from_dict(d: dict, where: str = "plans.json") -> "Plans":
        version = d.get("plans_version")
        if version != PLANS_VERSION:
            raise AutosegError(f"{where}: plans_version {version} is not supported (this autoseg reads "
                               f"version {PLANS_VERSION}); re-run `autoseg plan`")
        _check_keys(Plans, d, where)
        kw = dict(d)
        kw["configurations"] = {k: ConfigurationPlan.from_dict(v, f"{where}: configurations.{k}")
                                for k, v in d["configurations"].items()}
        return Plans(**kw)

    @staticmethod
    def load(path: str | Path) -> "Plans":
        return Plans.from_dict(load_json(path), str(path))
