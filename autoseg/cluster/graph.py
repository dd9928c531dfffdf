"""The job graphs of a study: preprocess once -> one job per configuration x fold -> a dependent step per
configuration; and the parts of a sharded prediction."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..core.errors import AutosegError
from ..io.workspace import Workspace
from .jobs import Job, autoseg_command, with_resume_if_started

AFTER_FOLDS_CROSSVAL = "{autoseg} crossval {run} -c {config}"


def cli_commands(parser: argparse.ArgumentParser) -> set[str]:
    """The commands of an `autoseg` command line (its subcommands)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def default_after_folds(parser: argparse.ArgumentParser | None = None) -> str | None:
    """The step run once all folds of a configuration are trained: `autoseg crossval RUN -c CONFIG` where the
    command line the jobs run (``parser``, handed in by the CLI) has that command, otherwise none (only a command
    that exists is ever submitted). Without a parser there is nothing to check against: crossval."""
    return AFTER_FOLDS_CROSSVAL if parser is None or "crossval" in cli_commands(parser) else None


def expand_template(template: str, run: Path, config: str) -> list[str]:
    """`{autoseg}`, `{run}` and `{config}` in a command template (shell words) -> an argument list."""
    try:
        words = shlex.split(template)
    except ValueError as e:
        raise AutosegError(f"--after-folds {template!r}: not a valid command line ({e})") from None
    out: list[str] = []
    for w in words:
        if w == "{autoseg}":
            out += autoseg_command()
        else:
            try:
                out.append(w.format(run=str(run), config=config))
            except (KeyError, IndexError, ValueError) as e:
                raise AutosegError(f"--after-folds {template!r}: unknown placeholder {e}; use {{autoseg}}, {{run}}, "
                                   "{config}") from None
    return out


def check_cli_args(parser: argparse.ArgumentParser | None, command: str, args: list[str]) -> None:
    """Parse a job's autoseg arguments now, so that a typo fails at submission rather than in every job.

    ``parser`` is the `autoseg` command line the jobs run, handed in by the CLI (cluster sits below cli and api and
    imports neither); with None the arguments are not checked before the jobs run."""
    if parser is None:
        return
    try:
        parser.parse_args([command, *args])
    except SystemExit:
        raise AutosegError(f"the arguments of the {command} jobs are not valid: autoseg {shlex.join([command, *args])}"
                           " (see the message above)") from None


def train_jobs(ws: Workspace, configs: list[str], folds: list[str], train_args: list[str],
               after_folds: str | None, preprocess: bool, *,
               parser: argparse.ArgumentParser | None = None) -> list[Job]:
    """[preprocess] -> train CONFIG FOLD for each pair -> after_folds per configuration. A fold that has a
    checkpoint is continued (--resume, decided again at each resubmission), never started over. With ``parser``
    (the `autoseg` command line) every train job's arguments are parsed here, before anything is submitted."""
    run = str(ws.root)
    jobs: list[Job] = []
    pre: list[str] = []
    if preprocess:
        jobs.append(Job("preprocess", autoseg_command() + ["preprocess", run, "-c", *configs], throttled=False))
        pre = ["preprocess"]
    first_stage = _first_stage_jobs(ws, configs, folds)
    for c in configs:
        names = []
        for f in folds:
            args = [run, "-c", c, "-f", f, *train_args]
            check_cli_args(parser, "train", args)
            names.append(f"train_{c}_fold{f}")
            fold_dir = ws.fold_dir(c, f)
            cmd = with_resume_if_started(autoseg_command() + ["train", *args], fold_dir)
            jobs.append(Job(names[-1], cmd, list(pre) + first_stage.get(c, []), fold_dir=str(fold_dir)))
        if after_folds:
            jobs.append(Job(f"after_{c}", expand_template(after_folds, ws.root, c), names, throttled=False))
    return jobs


def _first_stage_jobs(ws: Workspace, configs: list[str], folds: list[str]) -> dict[str, list[str]]:
    """The cascade trains on its first stage's cross-validation predictions: its fold jobs wait for every fold job
    of that stage submitted alongside."""
    from ..core.jsonio import load_json

    if not ws.plans.is_file():  # `train` itself reports a run without plans
        return {}
    plans = load_json(ws.plans).get("configurations", {})
    out = {}
    for c in configs:
        prev = plans.get(c, {}).get("previous_stage")
        if prev in configs:
            out[c] = [f"train_{prev}_fold{f}" for f in folds]
    return out


def predict_jobs(ws: Workspace, inp: Path, out: Path, num_parts: int, predict_args: list[str], *,
                 parser: argparse.ArgumentParser | None = None) -> list[Job]:
    """One job per part: `autoseg predict RUN -i IN -o OUT --num-parts N --part-id K --continue ...` (arguments
    parsed here with ``parser``, as in ``train_jobs``)."""
    if num_parts < 1:
        raise AutosegError(f"--num-parts {num_parts}: give 1 or more parts")
    jobs = []
    for k in range(num_parts):
        args = [str(ws.root), "-i", str(inp), "-o", str(out), "--num-parts", str(num_parts), "--part-id", str(k),
                "--continue", *predict_args]
        check_cli_args(parser, "predict", args)
        jobs.append(Job(f"predict_part{k}", autoseg_command() + ["predict", *args]))
    return jobs


def preprocessing_done(ws: Workspace, configs: list[str]) -> bool:
    """True when every training case of every configuration is preprocessed under the current plans."""
    from ..io.dataset import load_dataset
    from ..planner.plans import Plans
    from ..preprocessing.preprocessor import is_preprocessed

    plans = Plans.load(ws.plans)
    ds = load_dataset(plans.dataset_dir)
    for c in configs:
        c = plans.configuration(c).inherits_from or c  # the cascade reads 3d_fullres's data
        if not is_preprocessed(ds.cases, plans, c, ws.preprocessed(c)):
            return False
    return True


__all__ = ["train_jobs", "predict_jobs", "default_after_folds", "expand_template", "preprocessing_done",
           "AFTER_FOLDS_CROSSVAL"]
