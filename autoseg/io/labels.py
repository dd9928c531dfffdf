"""What dataset.json's ``labels`` mean for training, inference and evaluation.

Two extensions of plain integer labels, as in nnU-Net v2:

* regions: a label given as a list of values is a region (the union of those values); the network has one
  sigmoid output per region, and ``regions_class_order`` names the value each region writes when the label map is
  rebuilt (later regions overwrite earlier ones);
* ignore: a label named ``ignore`` (the highest value) marks voxels without annotation; they take no part in the
  loss or the metrics, and the network has no output for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.errors import AutosegError

IGNORE_NAME = "ignore"


def _values(v: Any, where: str) -> tuple[int, ...]:
    vals = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(vals, list) or not vals or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                          for x in vals):
        raise AutosegError(f"{where}: a label must be a non-negative integer or a non-empty list of them, got {v!r}")
    return tuple(vals)


@dataclass(frozen=True)
class LabelSpec:
    labels: dict[str, tuple[int, ...]]  # name -> values (one value for a plain label)
    regions_class_order: tuple[int, ...] | None = None
    listed: frozenset[str] = frozenset()  # names given as lists: regions, even with one value ([4])

    @staticmethod
    def parse(labels: Any, regions_class_order: Any, where: str) -> "LabelSpec":
        """Check dataset.json/plans.json labels; region syntax needs regions_class_order, one value per region."""
        if not isinstance(labels, dict) or not labels:
            raise AutosegError(f"{where}: 'labels' must map names to label values")
        spec = LabelSpec({str(k): _values(v, f"{where}: labels.{k}") for k, v in labels.items()},
                         None if regions_class_order is None else _values(regions_class_order,
                                                                          f"{where}: regions_class_order"),
                         frozenset(str(k) for k, v in labels.items() if isinstance(v, list)))
        spec._check(where)
        return spec

    def _check(self, where: str) -> None:
        if (0,) not in self.labels.values():
            raise AutosegError(f"{where}: 'labels' must declare the background as 0")
        if self.ignore_label is not None:
            if IGNORE_NAME in self.listed or self.ignore_label != max(self.label_values):
                raise AutosegError(f"{where}: the 'ignore' label must be one integer, the highest value, got "
                                   f"{list(self.labels[IGNORE_NAME])}")
        if not self.has_regions:
            vals = [v for (v,) in self.labels.values()]
            if len(set(vals)) != len(vals):
                raise AutosegError(f"{where}: labels: values must be distinct, got {self.to_json()}")
            if self.regions_class_order is not None:
                raise AutosegError(f"{where}: regions_class_order is only for region labels (lists of values)")
            return
        if self.regions_class_order is None:
            raise AutosegError(f"{where}: labels given as lists (regions) need 'regions_class_order', the label "
                               "value each region writes, in order")
        if len(self.regions_class_order) != len(self.regions):
            raise AutosegError(f"{where}: regions_class_order has {len(self.regions_class_order)} value(s) for "
                               f"{len(self.regions)} region(s) {self.region_names}")
        undeclared = sorted(set(self.regions_class_order) - set(self.label_values))
        if undeclared:
            raise AutosegError(f"{where}: regions_class_order values {undeclared} are not in any label")

    @property
    def has_regions(self) -> bool:
        return any(n != IGNORE_NAME and self.labels[n] != (0,) for n in self.listed)

    @property
    def ignore_label(self) -> int | None:
        v = self.labels.get(IGNORE_NAME)
        return v[0] if v else None

    @property
    def label_values(self) -> list[int]:
        """Every value a label map may hold (background and ignore included)."""
        return sorted({x for v in self.labels.values() for x in v})

    @property
    def foreground_values(self) -> list[int]:
        """Values worth sampling patches around (not background, not ignore)."""
        return [v for v in self.label_values if v not in (0, self.ignore_label)]

    @property
    def region_names(self) -> list[str]:
        """Names of what the network predicts besides background: regions, or foreground labels."""
        return [n for n, v in self.labels.items() if n != IGNORE_NAME and v != (0,)]

    @property
    def regions(self) -> list[tuple[int, ...]]:
        return [self.labels[n] for n in self.region_names]

    @property
    def num_outputs(self) -> int:
        """Network output channels: one per region (sigmoid), or one per label but ignore (softmax)."""
        return len(self.regions) + (0 if self.has_regions else 1)

    def to_json(self) -> dict:
        return {n: list(v) if n in self.listed else v[0] for n, v in self.labels.items()}

    def label_map(self, region_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """(R, ...) region probabilities -> label map: each region over the threshold writes its value of
        regions_class_order, in order, so nested regions end with the innermost value."""
        seg = np.zeros(region_probs.shape[1:], np.int16)
        for p, value in zip(region_probs, self.regions_class_order or ()):
            seg[p > threshold] = value
        return seg

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(C, ...) network outputs -> probabilities: sigmoid per region, softmax over labels."""
        return torch.sigmoid(logits) if self.has_regions else torch.softmax(logits, 0)

    def segment(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (as from ``probabilities``) -> label map in the dataset's values."""
        if self.has_regions:
            return self.label_map(probs)
        values = np.array([v for v in self.label_values if v != self.ignore_label])
        return values[np.argmax(probs, 0)].astype(np.int16)
