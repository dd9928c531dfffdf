"""One run folder and every path inside it. Passed down explicitly; no environment variables."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .utils import AutosegError


@dataclass(frozen=True)
class Workspace:
    root: Path

    @staticmethod
    def at(path: str | Path) -> "Workspace":
        return Workspace(Path(path).resolve())

    def require_plans(self) -> "Workspace":
        if not self.plans.is_file():
            raise AutosegError(f"{self.root}: no plans.json here; run `autoseg plan DATASET --out {self.root}` first")
        return self

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def plans(self) -> Path:
        return self.root / "plans.json"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def dataset_info(self) -> Path:
        return self.root / "dataset_info.json"

    def preprocessed(self, config: str) -> Path:
        return self.root / "preprocessed" / config

    def config_dir(self, config: str) -> Path:
        return self.root / config

    def fold_dir(self, config: str, fold: int | str) -> Path:
        return self.config_dir(config) / (f"fold_{fold}")

    def postprocessing(self, config: str) -> Path:
        return self.config_dir(config) / "postprocessing.json"

    def cv_summary(self, config: str) -> Path:
        return self.config_dir(config) / "cv_summary.json"
