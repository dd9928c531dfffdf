"""The end of a fold: its held-out cases predicted at full resolution and evaluated, and the time that takes
(kept in reserve by the budget clock)."""
from __future__ import annotations

import torch

from ..core.faults import fault_point
from ..core.jsonio import load_json
from .setup import FoldSetup


def summary_path(setup: FoldSetup):
    return setup.out / "validation" / "summary.json"


def read_validation(setup: FoldSetup) -> dict:
    p = summary_path(setup)
    return {"validation": load_json(p)} if p.is_file() else {}


def probabilities_missing(setup: FoldSetup) -> list[str]:
    """Held-out cases without ``validation/<case>.npz`` (the probabilities `find-best` ensembles)."""
    return [c for c in setup.val_cases if not (setup.out / "validation" / f"{c}.npz").is_file()]


def validate_fold(setup: FoldSetup, net: torch.nn.Module, device: torch.device, skip_done: bool = False,
                  check_stop=lambda: None, save_probabilities: bool = False, rank: int = 0,
                  world_size: int = 1) -> dict:
    """Predict the held-out cases and evaluate them against their reference labels. ``skip_done`` keeps the
    predictions a killed validation already wrote (each was written whole, under a temporary name first);
    ``save_probabilities`` also keeps each case's probabilities on its original grid (``<case>.npz``). Under DDP
    each rank predicts every ``world_size``-th case from its rank, all wait for each other, and rank 0 evaluates
    the whole fold and returns the summary (the other ranks return an empty dict)."""
    from ..evaluation.evaluate import CaseTable, evaluate_cases, summary_table, write_summary
    from ..inference.predictor import Predictor
    from .distributed import barrier

    ds = setup.ds
    net.set_deep_supervision(False)
    net.eval()
    pred = Predictor(setup.plans, setup.config, [net], [], device, previous=_previous_stage(setup, device))
    vdir = setup.out / "validation"
    vdir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i, case in enumerate(setup.val_cases):
        out = vdir / f"{case}{ds.file_ending}"
        pairs.append((case, out, ds.label_file(case)))
        if i % world_size != rank:
            continue
        done = out.is_file() and (not save_probabilities or (vdir / f"{case}.npz").is_file())
        if not (skip_done and done and _next_stage_done(setup, case)):
            pred.predict_files(ds.image_files(case), out, save_probabilities, grid_sink=_next_stage_sink(setup, case))
            fault_point("validation_case")
            check_stop()
    net.set_deep_supervision(True)
    if world_size > 1:
        barrier()
    if rank != 0:
        return {}
    summary = evaluate_cases(pairs, setup.plans.labels, CaseTable(ds.groups, ds.phases))
    write_summary(summary, vdir)
    print(f"validation of {setup.config} fold {setup.fold} ({len(pairs)} held-out cases, full resolution):")
    print(summary_table(summary), flush=True)
    return summary


def _previous_stage(setup: FoldSetup, device: torch.device):
    """The cascade validates fold k with the first stage's fold k, the model whose held-out cases these are (the
    same prediction that fold kept in predicted_next_stage)."""
    from ..inference.predictor import Predictor

    prev = setup.cfg.previous_stage
    if prev is None:
        return None
    return Predictor.of_configuration(setup.ws, prev, [setup.fold], device=str(device), use_postprocessing=False)


def _next_stage_file(setup: FoldSetup, case: str):
    from ..preprocessing.cascade import next_stage_dir

    return next_stage_dir(setup.ws, setup.config, setup.cfg.next_stage) / f"{case}.npy"


def _next_stage_done(setup: FoldSetup, case: str) -> bool:
    return setup.cfg.next_stage is None or _next_stage_file(setup, case).is_file()


def _next_stage_sink(setup: FoldSetup, case: str):
    """A first stage keeps each held-out case's prediction on the next stage's grid (nnU-Net's
    predicted_next_stage), which trains the cascade."""
    from ..preprocessing.cascade import save_next_stage, to_next_stage

    nxt = setup.cfg.next_stage
    if nxt is None:
        return None
    rp = setup.cfg.resampling_probabilities
    return lambda probs, props: save_next_stage(
        _next_stage_file(setup, case), to_next_stage(probs, props, setup.plans.configuration(nxt), rp))


def validation_reserve(setup: FoldSetup, val_iters: int, final_validation: bool, local_batch: int,
                       step: float | None) -> float:
    """Seconds to keep for the last epoch's validation patches, the final checkpoint and the full-resolution
    validation of the held-out cases, from the planned step time or, once steps have run, the measured one (a
    forward pass of one tile costs about a third of a training step per sample; mirroring multiplies the passes
    by 2**dim)."""
    from ..planner.budget import final_validation_seconds, tiles_per_case

    cfg, plans = setup.cfg, setup.plans
    if step is None and cfg.budget:
        step = cfg.budget["seconds_per_step"] * local_batch / cfg.batch_size
    # the last epoch's validation patches run after its final training step
    patches = val_iters * step / 2 if step is not None else 0.0
    if not (setup.val_cases and final_validation) or step is None:
        return 2.0 + patches
    dim = cfg.dim
    shape = list(plans.original_median_shape_after_transp)
    med = [m * s0 / s1 for m, s0, s1 in zip(shape[-dim:], plans.original_median_spacing_after_transp[-dim:],
                                             cfg.spacing)]
    whole = shape[:1] + med if dim == 2 else med
    return 2.0 + patches + 1.2 * final_validation_seconds(
        step, local_batch, len(setup.val_cases), tiles_per_case(whole, cfg.patch_size, dim), 2 ** dim)
