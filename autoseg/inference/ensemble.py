"""Which configurations a prediction runs, and how an ensemble of them is combined.

With no configuration named, ``best.json``'s winner runs (one configuration, or an ensemble of them with the
postprocessing `autoseg find-best` decided for it), else the only trained configuration. An ensemble's members each
average their own folds first; the members' probabilities then meet on the image's own grid (each resamples from
its own spacing) and are averaged before the argmax and the ensemble's postprocessing (``Predictor`` with
``members``: `autoseg predict -c A B` and ``Predictor.from_run(configuration=[A, B])``).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..core.errors import AutosegError
from ..io.workspace import Workspace
from ..planner.plans import Plans
from ..postprocessing.best import read_best


class _Member(Protocol):
    def full_probabilities(self, data: np.ndarray, geom) -> np.ndarray: ...


def mean_full_probabilities(members: Sequence[_Member], data: np.ndarray, geom) -> np.ndarray:
    """The mean of the members' probabilities on the image's full original grid (float32)."""
    return np.mean([m.full_probabilities(data, geom).astype(np.float32) for m in members], axis=0)


def chosen_configurations(ws: Workspace, plans: Plans, config: str | list[str] | None
                          ) -> tuple[list[str], list[int]]:
    """(configurations to run, LCC labels of an ensemble); says what it runs when best.json chose it."""
    if isinstance(config, str):
        return [config], []
    if config and len(config) == 1:
        return list(config), []
    best = read_best(ws)
    if config:
        members = list(dict.fromkeys(config))
        same = best is not None and sorted(best["configurations"]) == sorted(members)
        lcc = list(best["postprocessing"].get("lcc_labels", [])) if same else []
        print(f"predict: ensemble of {' + '.join(members)}; postprocessing "
              f"{lcc or 'none'}{'' if same else ' (best.json decided none for this ensemble: run find-best)'}",
              flush=True)
        return members, lcc
    if best is None:
        return [_only_trained(ws, plans)], []
    members = best["configurations"]
    print(f"predict: best.json's winner {best.get('name', '+'.join(members))} ({best.get('kind', 'configuration')}, "
          f"cross-validation mean Dice {best.get('cv_mean_foreground_dice', float('nan')):.4f})", flush=True)
    return members, list((best.get("postprocessing") or {}).get("lcc_labels", []))


def _only_trained(ws: Workspace, plans: Plans) -> str:
    trained = [c for c in plans.configurations if any(ws.config_dir(c).glob("fold_*/checkpoint_final.pt"))]
    if not trained:
        raise AutosegError(f"{ws.root}: no trained configuration; run `autoseg train`")
    if len(trained) > 1:
        raise AutosegError(f"{ws.root}: several trained configurations {trained}; choose one with -c, or run "
                           f"`autoseg find-best {ws.root}`")
    return trained[0]


__all__ = ["chosen_configurations", "mean_full_probabilities"]
