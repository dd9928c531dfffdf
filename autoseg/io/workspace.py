"""One run folder and every path inside it. Passed down explicitly; no environment variables.

Names that come from files (configuration names in plans.json, case names in splits.json) become parts of paths,
so they are checked first: a crafted name such as ``../../x`` must never lead a stage outside the run folder."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import AutosegError

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def check_name(name: str, what: str, source: str | Path) -> str:
    """``name`` if it is one plain path component (letters, digits, ``_ . + -``, not starting with a dot)."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise AutosegError(f"{source}: {what} {name!r} is not a plain name (letters, digits, _ . + -, not starting "
                           f"with a dot); rename it")
    return name


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

    @property
    def best(self) -> Path:
        return self.root / "best.json"

    def preprocessed(self, config: str) -> Path:
        return self.root / "preprocessed" / check_name(config, "configuration", self.plans)

    def config_dir(self, config: str) -> Path:
        return self.root / check_name(config, "configuration", self.plans)

    def fold_dir(self, config: str, fold: int | str) -> Path:
        return self.config_dir(config) / check_name(f"fold_{fold}", "fold", "-f")

    def postprocessing(self, config: str) -> Path:
        return self.config_dir(config) / "postprocessing.json"

    def cv_summary(self, config: str) -> Path:
        return self.config_dir(config) / "cv_summary.json"
