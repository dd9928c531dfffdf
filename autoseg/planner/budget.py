"""Plans that fit a stated compute budget on the device at hand.

nnU-Net sizes its networks for GPU memory and trains them for 1000 x 250 iterations whatever the hardware. Under a
budget (``autoseg plan --budget 20m``) autoseg instead asks how many optimiser steps each candidate configuration
would get in the time available, by timing short forward/backward passes on the device, and takes the most detailed
candidate (finest spacing, then widest network, then largest patch) that still gets enough steps to converge.

The rules are plain and printed with the plan:

- candidates coarsen the in-plane (and, for isotropic 3D, all) spacing by 1, 1.25, 1.5, 2, 2.5 and 3 times the
  full-resolution spacing, use 32 or 16 base features, and a patch that covers the median image at that spacing or
  3/4 of it per axis (never under 64 voxels where the image is larger);
- no spacing coarser than the labels survive: the coarsest factor at which the training labels' own round trip
  through the grid keeps a Dice of 0.97 for every class (``autoseg.preprocessing.resolution``; DRIVE's vessels
  allow 1.25-1.5x, ACDC's myocardium 2x, HC18's heads 3x). Where that rules out coarser spacings, half the image
  per axis at the allowed spacings comes after the usual candidates, so thin structures buy steps with context, not
  detail;
- the batch is 8 in 2D and 2 in 3D, or the memory plan's batch if that is smaller: on a CPU a step costs time in
  proportion to the batch, and more, smaller steps train a U-Net further in a fixed time than fewer large ones
  (nnU-Net's large 2D batches exist to fill GPU memory). Before the patch is cut to 3/4 of the image, the whole
  image is tried with half the batch (at least 2), as nnU-Net prefers context to batch size. On ACDC this is what
  a 60-minute budget chose at full resolution (0.86 mean test Dice); at 20 minutes, in the one run where it was
  chosen at 2.34 mm (1979 steps), it scored 0.82 against 0.85 for 3/4 of the image at batch 8, so it must reach
  the step threshold on its own (the timing-noise rule below never trades batch for context);
- a candidate is affordable when the time left for training (the budget less start-up and final validation) gives
  it at least ``MIN_STEPS`` steps (2000 in 2D, 1000 in 3D). Step times vary by ~15% between runs on a shared CPU,
  so a more detailed candidate with the same batch whose steps are within ``TIMING_NOISE`` of the first affordable
  one's is taken instead: otherwise two candidates of almost the same cost (on ACDC, 2.34 mm with 3/4 of the
  image and 3.1 mm with all of it) would be picked by the noise of the timing;
- seconds per step (forward, backward, optimiser step and, on a CPU where data workers share the cores, augmenting
  a batch) are measured for a few candidates (the cheapest, then the most detailed affordable ones by
  prediction) and predicted for the others from their multiply-accumulate count, scaled by the nearest
  measurement. Every figure is recorded in plans.json with ``measured`` saying which;
- those timings are a few steps each, and on a 2-core machine they moved by 10-30% between minutes while training
  held its speed for ten (issue 25). So the chosen candidate is timed again as training runs it (fed by training's
  data workers, 5% of the budget, 2-30 s), and that figure sets its steps and schedule; where it is more than
  ``TIMING_NOISE`` off the short timing, every timing is scaled by as much and the choice made again (the reasons
  say so).

The schedule is epochs x iterations of about a minute each; training follows the clock, not the epoch count (see
``autoseg.training.fit.loop``), so the learning rate reaches zero as the budget runs out on whatever the real speed is.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.errors import AutosegError
from ..core.tiling import window_starts
from ..networks.resenc import ResidualEncoderUNetArgs
from ..networks.unet import PlainConvUNetArgs, UNetArgs
from . import heuristics as H
from .plans import Architecture, BudgetRecord, CandidateRecord, ConfigurationPlan, Plans, Recommendation, Schedule

LabelLimit = Callable[[list[float], list[bool], tuple[float, ...]], tuple[float, str]]
"""(full-resolution spacing, the axes a budget coarsens, the factors it tries) -> (the coarsest factor the labels
allow, the reason); ``autoseg.preprocessing.resolution.label_limit`` measures it on the training labels (handed in
by ``api.plan``, so the planner reads no data)."""

Confirm = Callable[["Candidate"], float]
"""Seconds per training step of the chosen candidate timed as training runs it, longer than a candidate's first
timing (``StepTimer.confirm`` of ``autoseg.training.step_timing``; a timer without it is not confirmed)."""

StepTimer = Callable[["Candidate"], float]
"""Seconds per training step of a candidate on the device at hand; ``autoseg.training.step_timing.step_timer``
measures it (handed in by ``api.plan``, so the planner needs neither training nor a device of its own)."""

SPACING_FACTORS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
WIDTHS = (32, 16)
# (patch fraction per axis, batch fraction): the whole median image first, as nnU-Net does, with fewer samples per
# step before a smaller view of the image
PATCH_OPTIONS = ((1.0, 1.0), (1.0, 0.5), (0.75, 1.0))
# where the labels forbid a coarser spacing (thin structures), half the image per axis at the full batch
SHRUNK_PATCH = (0.5, 1.0)
MIN_PATCH_EDGE = 64
MIN_STEPS = {2: 2000, 3: 1000}
BUDGET_BATCH = {2: 8, 3: 2}
EPOCH_SECONDS = 60.0  # target length of one epoch under a budget (a line of progress per minute)
STARTUP_SECONDS = 20.0  # process start, workers, first batches
# each epoch's bookkeeping after its steps: progress.png (0.32 s), checkpoint_latest.pt and checkpoint_best.pt
# (0.1 s each for DRIVE's 83 MB), log lines (measured on the 2-core machine, issue 25)
EPOCH_BOOKKEEPING_SECONDS = 0.6
MAX_MEASUREMENTS = 6
# the chosen candidate is timed again, as training runs it, for this share of the budget (2-30 s)
CONFIRM_SHARE, CONFIRM_MIN_SECONDS, CONFIRM_MAX_SECONDS = 0.05, 2.0, 30.0
PREDICTION_SLACK = 0.75
# run-to-run spread of a measured step time on a shared CPU (the same 0.66-GMAC ACDC network timed 0.48-0.65 s/step
# across plans): a coarser candidate must buy more steps than this to be preferred over a more detailed one
TIMING_NOISE = 0.15


def parse_budget(text: str | float | int | None) -> float | None:
    """'20m', '1.5h', '90s', '3600' (seconds) -> seconds; None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text).lower())
        if not m:
            raise AutosegError(f"budget {text!r} is not a duration; write e.g. 90s, 20m or 1.5h")
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if seconds <= 0:
        raise AutosegError(f"budget {text!r} must be positive")
    return seconds


@dataclass(frozen=True)
class Candidate:
    """A configuration to time: what the step-timing harness (``autoseg.training.step_timing``) needs to build the
    network and a batch, and to augment it as training would (2D augmentation of a 3D patch when ``dummy_2d``)."""
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    base_features: int
    arch_kwargs: UNetArgs  # PlainConvUNetArgs, or ResidualEncoderUNetArgs under a residual preset
    macs: float  # multiply-accumulates of one forward pass of one sample (the network's own count)
    dummy_2d: bool = False
    network_class_name: str = "PlainConvUNet"

    def describe(self) -> str:
        return (f"spacing {[round(s, 3) for s in self.spacing]} patch {list(self.patch_size)} batch "
                f"{self.batch_size} features {self.base_features}")


def _arch(dim: int, spacing, patch, base: int, num_channels: int, num_classes: int,
          preset: H.Preset | None = None) -> tuple[UNetArgs, tuple]:
    """The preset's network for a candidate: the plain U-Net, or the residual encoder with the preset's blocks per
    stage (so a ResEnc budget times the network it will train)."""
    topo = H.network_topology(spacing, patch)
    n = topo.n_stages
    feats = H.features_per_stage(n, dim, base=base, cap=H.MAX_FEATURES[dim] * base // H.BASE_FEATURES)
    common = dict(dim=dim, input_channels=num_channels, num_classes=num_classes, n_stages=n,
                  features_per_stage=tuple(feats), kernel_sizes=tuple(topo.kernel_sizes), strides=tuple(topo.strides))
    if preset is not None and preset.residual:
        return ResidualEncoderUNetArgs(n_blocks_per_stage=tuple(preset.encoder_blocks[:n]),
                                       n_conv_per_stage_decoder=tuple(preset.decoder_convs[:n - 1]),
                                       **common), topo.patch_size
    args = PlainConvUNetArgs(n_conv_per_stage=(2,) * n, n_conv_per_stage_decoder=(2,) * (n - 1), **common)
    return args, topo.patch_size


def _class_name(preset: H.Preset | None) -> str:
    return preset.network_class_name if preset is not None else "PlainConvUNet"


def coarsened_axes(dim: int, coarsen_all: bool) -> np.ndarray:
    """Which axes a budget coarsens: all of them in 2D and for isotropic 3D, the in-plane ones otherwise."""
    return np.ones(dim, bool) if coarsen_all or dim == 2 else np.arange(dim) > 0


def candidates(spacing, median_shape, plan_batch: int, num_channels: int, num_classes: int,
               coarsen_all: bool, dummy_2d: bool = False, preset: H.Preset | None = None,
               max_factor: float = SPACING_FACTORS[-1]) -> list[Candidate]:
    """Candidate configurations, most detailed first: finest spacing, then widest, then the whole median image
    with the full batch, with half the batch, then 3/4 of the image per axis.

    ``max_factor`` is the coarsest spacing the labels allow (``autoseg.preprocessing.resolution``). Where it rules
    out coarser spacings, the patch shrinks instead: half the image per axis at the allowed spacings, finest first,
    after every other candidate (taken only when none of those affords its steps)."""
    dim = len(spacing)
    spacing = np.asarray(spacing, float)
    median_shape = np.asarray(median_shape, float)
    full_batch = int(min(plan_batch, BUDGET_BATCH[dim]))
    coarse = coarsened_axes(dim, coarsen_all)
    factors = [f for f in SPACING_FACTORS if f <= max_factor * (1 + 1e-6)] or [SPACING_FACTORS[0]]
    options = [(f, PATCH_OPTIONS) for f in factors]
    if len(factors) < len(SPACING_FACTORS):
        options += [(f, (SHRUNK_PATCH,)) for f in factors]
    out, seen = [], set()
    for f, patch_options in options:
        sp = np.where(coarse, spacing * f, spacing)
        shape = np.maximum(np.round(median_shape * spacing / sp), 1)
        for base in WIDTHS:
            for frac, bfrac in patch_options:
                batch = max(H.MIN_BATCH_SIZE, int(round(full_batch * bfrac)))
                patch = np.where(coarse, np.maximum(np.round(shape * frac), np.minimum(shape, MIN_PATCH_EDGE)),
                                 np.minimum(shape, H.initial_patch_size(sp, shape)))
                kw, padded = _arch(dim, sp, [int(p) for p in patch], base, num_channels, num_classes, preset)
                key = (tuple(np.round(sp, 4)), padded, base, batch)
                if key in seen:
                    continue
                seen.add(key)
                out.append(Candidate(tuple(float(s) for s in sp), tuple(int(p) for p in padded), batch, base, kw,
                                     kw.costs(padded).macs, dummy_2d, _class_name(preset)))
    return out


def final_validation_seconds(step_seconds: float, batch: int, n_val_cases: int, tiles_per_case: float,
                             mirrors: int) -> float:
    """Time to predict the held-out cases: a forward pass costs about a third of a training step; reading,
    resampling, writing and scoring a case about 0.6 s more (ACDC: 0.39 s of pipeline over the bare forward passes,
    0.19 s to score; benchmarks/README.md)."""
    per_tile = step_seconds / batch / 3.0
    return n_val_cases * (tiles_per_case * mirrors * per_tile + 0.6)


def tiles_per_case(median_shape, patch_size, dim: int) -> float:
    """Sliding-window tiles (step 1/2) for a median image; a 2D configuration runs over every slice."""
    shape = list(median_shape)
    n = 1.0
    for s, p in zip(shape[-dim:], patch_size):
        n *= len(window_starts(int(round(s)), int(p), 0.5))
    if dim == 2 and len(shape) == 3:
        n *= shape[0]
    return n


def choose(cands: list[Candidate], train_seconds_for: Callable[[int, float], float], dim: int,
           timer: Callable[[Candidate], float], log: list[dict], confirm: Confirm | None = None,
           notes: list[str] | None = None) -> tuple[int, float]:
    """Index of the chosen candidate and its seconds per step.

    ``train_seconds_for(i, step_seconds)`` is the time left for training steps once start-up and the final validation
    (which depends on the step time) are paid for. Measurements go into ``log``. With ``confirm``, the chosen
    candidate is timed again as training runs it (``_confirmed``) and that figure is its step time; what it changed
    is said in ``notes``.
    """
    measured: dict[int, float] = {}

    def measure(i: int) -> float:
        if i not in measured:
            measured[i] = timer(cands[i])
        return measured[i]

    def predict(i: int) -> float:
        if i in measured:
            return measured[i]
        j = min(measured, key=lambda m: abs(math.log(cands[m].macs / cands[i].macs)))
        return measured[j] * cands[i].macs * cands[i].batch_size / (cands[j].macs * cands[j].batch_size)

    def steps(i: int, t: float) -> float:
        return train_seconds_for(i, t) / loop_seconds_per_step(t)

    cheapest = min(range(len(cands)), key=lambda i: cands[i].macs * cands[i].batch_size)
    measure(cheapest)
    chosen = None
    while len(measured) < MAX_MEASUREMENTS:
        # predictions scale linearly with the work and overestimate bigger candidates (fixed costs), so any
        # candidate predicted within PREDICTION_SLACK of the threshold is measured before it is ruled out
        ok = [i for i in range(len(cands)) if steps(i, predict(i)) >= MIN_STEPS[dim] * (
            1.0 if i in measured else PREDICTION_SLACK)]
        if not ok:
            break
        best = ok[0]
        if best in measured:
            chosen = best
            break
        measure(best)
    if chosen is None:
        ok = [i for i in measured if steps(i, measured[i]) >= MIN_STEPS[dim]]
        chosen = min(ok) if ok else cheapest
    batches = [c.batch_size for c in cands]
    chosen = _within_noise(chosen, measured, measure, predict, steps, batches)
    if confirm is not None:
        chosen = _confirmed(chosen, cands, measured, confirm, predict, steps, MIN_STEPS[dim], cheapest, batches,
                            notes)
    log.extend(_candidate_log(cands, chosen, measured, predict, steps))
    return chosen, measured.get(chosen, predict(chosen))


def _confirmed(chosen: int, cands: list[Candidate], measured: dict, confirm: Confirm, predict, steps,
               min_steps: int, cheapest: int, batches: list[int], notes: list[str] | None) -> int:
    """The chosen candidate timed again as training runs it, for longer (``confirm``), its figure replacing the short
    timing's in ``measured``. A few-step timing moved by 10-30% between minutes on an idle 2-core machine while
    training's own speed held steady for ten minutes (HC18: 0.274 and 0.330 s timed, 0.357 s trained in both runs;
    issue 25). Where the longer timing differs from the short one by more than ``TIMING_NOISE``, the machine is
    taken to run every candidate that much slower (or faster) than its short timing said: the other measurements
    are scaled alike and the choice is made again from them (predictions from the scaled figures stand in for new
    short timings); a different choice is confirmed in turn, and kept."""
    short = measured[chosen]
    measured[chosen] = confirm(cands[chosen])
    ratio = measured[chosen] / short
    said = (f"confirmed: {cands[chosen].describe()} timed again as training runs it: {measured[chosen]:.3f}s/step "
            f"against {short:.3f}s in the short timing ({ratio:.2f}x)")
    if abs(math.log(ratio)) > math.log(1 + TIMING_NOISE):
        for i in measured:
            if i != chosen:
                measured[i] *= ratio
        ok = [i for i in range(len(cands)) if steps(i, predict(i)) >= min_steps]
        again = ok[0] if ok else cheapest
        again = _within_noise(again, measured, predict, predict, steps, batches)
        if again != chosen:
            before = predict(again)
            measured[again] = confirm(cands[again])
            said += (f"; beyond the {TIMING_NOISE:.0%} noise, so every timing was scaled by {ratio:.2f} and the "
                     f"choice made again: {cands[again].describe()}, confirmed at {measured[again]:.3f}s/step "
                     f"({before:.3f}s scaled from the short timings)")
            chosen = again
        else:
            said += f"; beyond the {TIMING_NOISE:.0%} noise, but the choice stands with every timing scaled alike"
    if notes is not None:
        notes.append(said)
    return chosen


def _candidate_log(cands: list[Candidate], chosen: int, measured: dict, predict, steps) -> list[dict]:
    """Every candidate with its measured or predicted step time, for the plans' budget record."""
    out = []
    for i, c in enumerate(cands):
        t = predict(i)
        out.append({"spacing": [round(s, 4) for s in c.spacing], "patch_size": list(c.patch_size),
                    "batch_size": c.batch_size, "base_features": c.base_features, "gmacs_per_sample": round(
                        c.macs / 1e9, 3), "seconds_per_step": round(t, 4), "measured": i in measured,
                    "steps_in_budget": int(steps(i, t)), "chosen": i == chosen})
    return out


def _within_noise(chosen: int, measured: dict, measure, predict, steps, batches: list[int]) -> int:
    """The most detailed candidate before ``chosen`` with the same batch whose measured steps are within
    TIMING_NOISE of ``chosen``'s (at most two extra timings), else ``chosen``. A smaller batch is not "the same
    cost": within the noise in steps it sees about half the samples (on ACDC at 20 minutes the whole image at
    batch 4 scored 0.82 mean Dice where 3/4 of it at batch 8 scored 0.85)."""
    target = steps(chosen, measure(chosen)) / (1 + TIMING_NOISE)
    extra = 0
    for i in range(chosen):
        slack = 1.0 if i in measured else PREDICTION_SLACK
        if batches[i] != batches[chosen] or steps(i, predict(i)) < target * slack:
            continue
        if i not in measured:
            if extra == 2:
                break
            extra += 1
        if steps(i, measure(i)) >= target:
            return i
    return chosen


def affordable_at(record: BudgetRecord, speed: float) -> CandidateRecord | None:
    """The most detailed of the plan's candidates before the chosen one that would still get its minimum steps if
    every step took ``speed`` times the time the plan timed or predicted for it (training running faster than
    planned: ``speed`` < 1), or None."""
    chosen = next((i for i, c in enumerate(record.candidates) if c.chosen), len(record.candidates))
    for c in record.candidates[:chosen]:
        if c.steps_in_budget / speed >= record.min_steps:
            return c
    return None


def confirm_seconds(budget_seconds: float) -> float:
    """How long the chosen candidate is timed again: 5% of the budget, 2 to 30 seconds (30 s from a 10-minute budget
    up). One fixed step, fed by training's workers on the idle 2-core machine for 8 minutes, wandered 0.18-0.26 s in
    15-s windows with no CPU stolen by the host: 25% of 15-s windows but 16% of 30-s ones were more than 10% off the
    8 minutes' mean (benchmarks/speed_drift.py, issue 25). At 20 minutes ACDC's 30-s window held 3 runs of 3
    within 10%, where 15 s had caught 0.520 s against the 0.469 s that training averaged."""
    return float(np.clip(CONFIRM_SHARE * budget_seconds, CONFIRM_MIN_SECONDS, CONFIRM_MAX_SECONDS))


def _epoch_shape(step_seconds: float) -> tuple[int, int]:
    """(iterations, validation batches) of one epoch of about ``EPOCH_SECONDS``."""
    ipe = int(np.clip(round(EPOCH_SECONDS / step_seconds), 10, 250))
    return ipe, max(2, ipe // 20)


def loop_seconds_per_step(step_seconds: float) -> float:
    """Seconds of the training loop per step: the step, plus its share of each epoch's validation patches (a
    forward pass, about a third of a step each) and of the epoch's bookkeeping (checkpoints, progress plot). Counting
    steps by the bare step overstated them by 3-5% (DRIVE: 0.254 s of loop per 0.240 s step, issue 25)."""
    ipe, val = _epoch_shape(step_seconds)
    return step_seconds * (1 + val / (3 * ipe)) + EPOCH_BOOKKEEPING_SECONDS / ipe


def schedule(step_seconds: float, train_seconds: float) -> dict:
    """Epochs x iterations (about a minute each) expected to fill ``train_seconds``."""
    ipe, val_iters = _epoch_shape(step_seconds)
    epochs = max(1, int(train_seconds // (ipe * loop_seconds_per_step(step_seconds))))
    return {"epochs": epochs, "iters_per_epoch": ipe, "val_iters": val_iters}


def apply_budget(plans: Plans, budget_seconds: float, device: str, n_cases: int, n_folds: int = 5, *,
                 timer: StepTimer, verbose: bool = True, only: list[str] | None = None,
                 label_limit: LabelLimit | None = None) -> Plans:
    """Plans whose 2d and 3d_fullres configurations are re-chosen for ``budget_seconds`` of training on
    ``device`` (its name, recorded), with step times from ``timer``; 3d_lowres is dropped (a cascade does not fit a
    budget). With ``only``, just those configurations are timed and kept (the others would cost planning time and
    could not be trained as planned). With ``label_limit``, no configuration is coarsened past what its labels
    survive."""
    names = [n for n in plans.configurations if n != "3d_lowres" and (only is None or n in only)]
    if only is not None:
        unknown = sorted(set(only) - set(plans.configurations))
        if unknown or not names:
            raise AutosegError(f"configuration(s) {unknown or only} cannot be planned under a budget; this dataset "
                               f"has {[n for n in plans.configurations if n != '3d_lowres']}")
    configs = {name: budget_configuration(plans, plans.configurations[name], budget_seconds, str(device),
                                          math.ceil(n_cases / n_folds), timer, label_limit) for name in names}
    rec = recommend(configs)
    if verbose:
        for name, cfg in configs.items():
            b = cfg.budget
            print(f"budget {name}: chose spacing {[round(s, 3) for s in cfg.spacing]} patch {cfg.patch_size} batch "
                  f"{cfg.batch_size} features {cfg.architecture.arch_kwargs.features_per_stage[0]} "
                  f"({b.seconds_per_step:.3f}s/step in {b.precision}, ~{b.expected_steps} steps)", flush=True)
    return dataclasses.replace(plans, configurations=configs, recommendation=rec)


def coarsening(cfg: ConfigurationPlan) -> float:
    """How many times coarser than full resolution a budget configuration's spacing is (its largest factor over
    the axes; the budget's first candidate is always the full-resolution spacing)."""
    full = cfg.budget.candidates[0].spacing
    return max(s / f for s, f in zip(cfg.spacing, full))


def recommend(configs: dict[str, ConfigurationPlan]) -> Recommendation:
    """Which configuration a budget should train: nnU-Net picks by cross-validating every configuration, which a
    budget cannot pay for, so the choice is a rule of what the plan already knows.

    - one configuration planned: that one;
    - 2d when the full-resolution 3D spacing is anisotropic (one axis more than ``ANISOTROPY_THRESHOLD`` times
      coarser than the others): a 3D network then sees a few thick slices, costs several times a 2D step and, in
      the same minutes, trains far fewer steps (ACDC, 20 minutes on a CPU: 3d_fullres stopped after 13 epochs at
      twice 2d's loss; benchmarks/README.md);
    - 2d when 3d_fullres cannot get the minimum number of steps in the budget even at its cheapest candidate;
    - 2d when 3d_fullres could only afford a spacing more than one step of ``SPACING_FACTORS`` (1.25x) coarser than
      2d's: 3D context bought with detail that 2D keeps (isotropic 1 mm brain MR in 10 CPU minutes: 3D at 3 mm
      against 2D at 2 mm);
    - otherwise 3d_fullres: isotropic volumes (e.g. MSD Hippocampus crops), where nnU-Net's 3d_fullres is the
      strongest configuration and the budget pays for it at about 2d's detail.
    """
    names = sorted(configs)
    if len(names) == 1:
        return Recommendation(names[0], [f"{names[0]} is the only configuration planned"])
    if "3d_fullres" not in configs or "2d" not in configs:
        pick = names[0]
        return Recommendation(pick, [f"no rule ranks {names}; {pick} is the first"])
    c2, c3 = configs["2d"], configs["3d_fullres"]
    full3 = c3.budget.candidates[0].spacing
    ratio = max(full3) / min(full3)
    b3 = c3.budget
    f2, f3 = coarsening(c2), coarsening(c3)
    if ratio > H.ANISOTROPY_THRESHOLD:
        why = (f"3d_fullres spacing {[round(s, 3) for s in full3]} is anisotropic (ratio {ratio:.1f} > "
               f"{H.ANISOTROPY_THRESHOLD:g}): 3D context over thick slices costs more steps than it gives")
        return Recommendation("2d", [why])
    if b3.expected_steps < b3.min_steps:
        return Recommendation("2d", [f"3d_fullres gets only ~{b3.expected_steps} steps in the budget (at least "
                                     f"{b3.min_steps} wanted); 2d gets ~{c2.budget.expected_steps}"])
    if f3 > f2 * SPACING_FACTORS[1] * (1 + 1e-6):
        return Recommendation("2d", [f"3d_fullres fits the budget only at {f3:.2f}x the full-resolution spacing, "
                                     f"2d at {f2:.2f}x: 3D context would cost detail that 2d keeps"])
    return Recommendation("3d_fullres", [
        f"isotropic enough (spacing ratio {ratio:.1f} <= {H.ANISOTROPY_THRESHOLD:g}) and 3d_fullres affords "
        f"~{b3.expected_steps} steps (>= {b3.min_steps}) at {f3:.2f}x the full-resolution spacing, within one step "
        f"of 2d's {f2:.2f}x: 3D context at about the same detail"])


def budget_configuration(plans: Plans, cfg: ConfigurationPlan, budget_seconds: float, device: str, n_val: int,
                         timer: StepTimer, label_limit: LabelLimit | None = None) -> ConfigurationPlan:
    """One configuration re-chosen for the budget (see the module's docstring), with its reasons and record."""
    dim = cfg.dim
    anisotropic = cfg.resampling_data.separate_z
    max_factor, limit_reasons = SPACING_FACTORS[-1], []
    if label_limit is not None:
        max_factor, why = label_limit(cfg.spacing, list(coarsened_axes(dim, not anisotropic)), SPACING_FACTORS)
        limit_reasons = [why]
    cands = candidates(cfg.spacing, cfg.median_image_size_in_voxels, cfg.batch_size, plans.num_input_channels,
                       plans.num_classes, coarsen_all=not anisotropic, dummy_2d=dim == 3 and anisotropic,
                       preset=H.get_preset(plans.preset), max_factor=max_factor)
    n_slices = list(plans.original_median_shape_after_transp[:1])

    def shape_at(c: Candidate) -> list[float]:
        return [m * s0 / s1 for m, s0, s1 in zip(cfg.median_image_size_in_voxels, cfg.spacing, c.spacing)]

    def validation(c: Candidate, t: float) -> float:
        whole = n_slices + shape_at(c) if dim == 2 else shape_at(c)
        return final_validation_seconds(t, c.batch_size, n_val, tiles_per_case(whole, c.patch_size, dim), 2 ** dim)

    log: list[dict] = []
    notes: list[str] = []
    t0 = time.time()
    confirm = getattr(timer, "confirm", None)
    window = confirm_seconds(budget_seconds)
    idx, step_s = choose(cands, lambda i, t: budget_seconds - STARTUP_SECONDS - validation(cands[i], t), dim,
                         timer, log, (lambda c: confirm(c, window)) if confirm is not None else None, notes)
    c = cands[idx]
    val_s = validation(c, step_s)
    train_s = max(budget_seconds - STARTUP_SECONDS - val_s, 0.0)
    record = BudgetRecord(
        budget_seconds=float(budget_seconds), device=device, seconds_per_step=round(step_s, 4),
        train_seconds=round(train_s, 1), final_validation_seconds=round(val_s, 1),
        expected_steps=int(train_s / loop_seconds_per_step(step_s)), schedule=Schedule(**schedule(step_s, train_s)),
        min_steps=MIN_STEPS[dim], candidates=[CandidateRecord(**r) for r in log],
        precision=getattr(timer, "precision", None) or "fp32")
    return dataclasses.replace(
        cfg, spacing=[float(s) for s in c.spacing], patch_size=list(c.patch_size), batch_size=c.batch_size,
        median_image_size_in_voxels=[float(round(s, 2)) for s in shape_at(c)],
        architecture=Architecture(c.network_class_name, c.arch_kwargs),
        reasons=list(cfg.reasons) + limit_reasons + _budget_reasons(record, c, len(cands), time.time() - t0, n_val)
        + notes + _precision_reasons(record, timer), budget=record)


def _precision_reasons(b: BudgetRecord, timer: StepTimer) -> list[str]:
    compared = timer.comparison() if hasattr(timer, "comparison") else ""
    if not compared:
        return []
    return [f"precision {b.precision}: {compared}"]


def _budget_reasons(b: BudgetRecord, c: Candidate, n_cands: int, seconds: float, n_val: int) -> list[str]:
    dim, s = len(c.patch_size), b.schedule
    reasons = [
        f"budget {b.budget_seconds:.0f}s on {b.device}: {n_cands} candidates, {sum(r.measured for r in b.candidates)} "
        f"timed ({seconds:.1f}s); chose the most detailed with >= {MIN_STEPS[dim]} steps (or within "
        f"{TIMING_NOISE:.0%} of the steps of the first that has them): "
        f"{c.describe()} at {b.seconds_per_step:.3f}s/step -> ~{b.expected_steps} steps",
        f"schedule {s.epochs} epochs x {s.iters_per_epoch} iterations (followed by the clock: the "
        f"learning rate reaches 0 when the budget ends); {b.final_validation_seconds:.0f}s kept for validating a "
        f"fold's {n_val} held-out cases, {STARTUP_SECONDS:.0f}s for start-up"]
    if not any(r.measured and r.steps_in_budget >= MIN_STEPS[dim] for r in b.candidates):
        reasons.append(f"warning: even the cheapest candidate gets fewer than {MIN_STEPS[dim]} steps; expect an "
                       "under-trained model (raise the budget)")
    return reasons
