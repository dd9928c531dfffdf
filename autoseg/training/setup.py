"""What one fold's training reads, loaded once by ``autoseg.api`` and passed down: the plans, the dataset, the
configuration and the fold's cases. Nothing below re-reads plans.json, dataset.json or splits.json."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..io.dataset import DatasetInfo
from ..io.workspace import Workspace
from ..networks import network_args
from ..planner.plans import ConfigurationPlan, Plans
from .splits import load_fold, read_splits


@dataclass(frozen=True)
class FoldSetup:
    ws: Workspace
    plans: Plans
    ds: DatasetInfo
    config: str
    fold: str
    train_cases: list[str]
    val_cases: list[str]
    n_folds: int | None = None  # folds in splits.json (None for fold 'all')
    network: str | None = None  # `train --network`: another registered network built from the plan's arguments

    @staticmethod
    def load(ws: Workspace, plans: Plans, ds: DatasetInfo, config: str, fold: str,
             network: str | None = None) -> "FoldSetup":
        plans.configuration(config)
        ws.config_dir(config)  # checks the name before it becomes a path
        splits = read_splits(ws.splits) if str(fold) != "all" else None
        train_cases, val_cases = load_fold(ws.splits, str(fold), ds.cases, splits)
        if network is not None:  # its argument class must accept the plan's network arguments
            network_args(network, plans.configuration(config).architecture.arch_kwargs.to_dict(),
                         f"--network {network}: the plan's {config} network arguments")
        return FoldSetup(ws, plans, ds, config, str(fold), train_cases, val_cases, len(splits) if splits else None,
                         network)

    @property
    def cfg(self) -> ConfigurationPlan:
        return self.plans.configuration(self.config)

    @property
    def out(self) -> Path:
        return self.ws.fold_dir(self.config, self.fold)

    @property
    def num_classes(self) -> int:
        return self.plans.num_classes

    @property
    def metric_classes(self) -> int:
        """Columns of the pseudo-Dice counts plus one (the loop leaves out a background column): every region
        counts, as background is not a region."""
        return self.num_classes + int(self.plans.label_spec.has_regions)

    @property
    def architecture(self) -> dict:
        arch = self.cfg.architecture
        kwargs = dict(arch.arch_kwargs)
        if self.cfg.previous_stage:  # the cascade: the first stage's one-hot segmentation is extra input
            kwargs["input_channels"] = int(kwargs["input_channels"]) + self.num_classes
        return {"network_class_name": self.network or arch.network_class_name, "arch_kwargs": kwargs}

    @property
    def data_folder(self) -> Path:
        """Preprocessed data; a configuration that inherits from another (3d_cascade_fullres) reads that one's."""
        return self.ws.preprocessed(self.cfg.inherits_from or self.config)

    @property
    def previous_stage_folder(self) -> Path | None:
        """The cascade's first-stage cross-validation predictions for this configuration (None otherwise)."""
        if not self.cfg.previous_stage:
            return None
        from ..preprocessing.cascade import next_stage_dir

        return next_stage_dir(self.ws, self.cfg.previous_stage, self.config)
