"""The training assembly's parts: seeded weights, pretrained weights, value checks, schedules and their resume
state, the fold lock, log.jsonl after a resume, names that must stay inside the run folder, crossval."""
import json
import os
import re
import stat
import subprocess
import sys

import pytest
import torch

from autoseg.cli import main
from autoseg.core.errors import AutosegError
from autoseg.networks.checkpoint import load_matching_weights, save_checkpoint
from autoseg.training.config import TrainConfig, poly_lr
from autoseg.training.fit.parts import seeded_network

ARCH = {"network_class_name": "PlainConvUNet", "arch_kwargs": dict(
    dim=2, input_channels=1, num_classes=4, n_stages=3, features_per_stage=[4, 8, 16],
    kernel_sizes=[[3, 3]] * 3, strides=[[1, 1], [2, 2], [2, 2]], n_conv_per_stage=[2] * 3,
    n_conv_per_stage_decoder=[2] * 2)}


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_same_seed_same_weights_and_the_global_generator_is_untouched():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = (_weights(seeded_network(ARCH, s)) for s in (7, 7, 8))
    assert torch.equal(torch.rand(3), before)  # building the network drew nothing from the global generator
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    conv = [k for k in a if k.endswith("weight") and a[k].ndim == 4]
    assert conv and not any(torch.equal(a[k], c[k]) for k in conv)


def test_pretrained_weights_skip_a_head_with_another_class_count(tmp_path):
    src = seeded_network(ARCH, 1)
    ck = tmp_path / "pre.pt"
    save_checkpoint({"network_weights": src.state_dict(), "architecture": ARCH}, ck)
    arch3 = {**ARCH, "arch_kwargs": {**ARCH["arch_kwargs"], "num_classes": 3}}
    net = seeded_network(arch3, 2)
    init = _weights(net)
    loaded, skipped = load_matching_weights(net, ck)
    own, theirs = net.state_dict(), src.state_dict()
    assert loaded and skipped
    for k in loaded:
        assert torch.equal(own[k], theirs[k])
    heads = [s.split()[0] for s in skipped]
    for k in heads:  # the segmentation heads (3 vs 4 outputs) keep their own initialisation
        assert own[k].shape[0] == 3 and torch.equal(own[k], init[k])
    assert all("shape" in s for s in skipped)
    assert set(loaded) | set(heads) == set(own)
    other = {**ARCH, "arch_kwargs": {**ARCH["arch_kwargs"], "features_per_stage": [5, 9, 17], "num_classes": 2}}
    with pytest.raises(AutosegError, match="no layer matches"):
        load_matching_weights(seeded_network(other, 0), ck)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("iters_per_epoch", 0), ("initial_lr", -5.0), ("batch_size", -2), ("val_iters", -1),
    ("momentum", 1.0), ("weight_decay", -1e-3), ("grad_clip", 0.0), ("oversample_foreground", 1.5),
    ("num_workers", -1), ("save_every", 0), ("ema_alpha", 1.0), ("num_processes", 0), ("seed", -1),
    ("initial_lr", float("nan")), ("budget_seconds", 0.0)])
def test_bad_values_are_refused(field, value):
    with pytest.raises(AutosegError, match="out of range"):
        TrainConfig(**{field: value}).validate()


def test_an_unknown_optimiser_is_refused_by_name():
    with pytest.raises(AutosegError, match=r"--optimizer 'adam' is out of range: it must be one of sgd, adamw"):
        TrainConfig(optimizer="adam").validate()


@pytest.mark.parametrize("budget, given, want", [
    (None, {}, ("sgd", 1e-2)),  # nnU-Net's schedule
    (1200.0, {}, ("adamw", 1e-3)),  # a budget: AdamW from its own default
    (1200.0, {"optimizer": "sgd"}, ("sgd", 1e-2)),  # the user's choice stands
    (None, {"optimizer": "adamw"}, ("adamw", 1e-3)),  # the learning rate follows the optimiser
    (1200.0, {"initial_lr": 3e-4}, ("adamw", 3e-4)),  # a chosen learning rate stays
    (None, {"initial_lr": 0.05}, ("sgd", 0.05))])
def test_the_optimiser_and_its_learning_rate_are_resolved(budget, given, want):
    from autoseg.api import _resolve_optimizer
    from autoseg.training.fit.parts import make_optimizer

    tc = _resolve_optimizer(TrainConfig(budget_seconds=budget, **given), set(given)).validate()
    assert (tc.optimizer, tc.initial_lr) == want
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2))], tc.optimizer, tc.initial_lr)
    assert type(opt) is {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[tc.optimizer]
    assert opt.param_groups[0]["lr"] == tc.initial_lr
    assert opt.param_groups[0].get("amsgrad", True) and opt.param_groups[0].get("nesterov", True)


def test_defaults_are_valid():
    TrainConfig().validate()
    TrainConfig(batch_size=None, num_workers=0, oversample_foreground=0.0, val_iters=0).validate()


def test_epoch_schedule_is_nnunets_poly_and_stops_at_the_last_epoch():
    from autoseg.training.fit.schedule import EpochSchedule

    s = EpochSchedule(0.01, 4, start_time=0.0)
    assert [s.epoch_lr(e) for e in range(4)] == [poly_lr(0.01, e, 4) for e in range(4)]
    assert s.step_lr(5, 1.0) == poly_lr(0.01, 3, 4)
    assert not s.finished(3) and s.finished(4)
    assert [s.after_epoch({"epoch": e}) for e in (1, 4)] == [False, True]


def test_clock_schedule_continues_the_same_budget_after_a_resume(monkeypatch):
    import autoseg.training.config as config
    import autoseg.training.fit.schedule as schedule

    now = [1000.0]
    monkeypatch.setattr(schedule.time, "time", lambda: now[0])
    monkeypatch.setattr(config.BudgetClock, "__init__", _clock_init(now))
    first = schedule.ClockSchedule(0.01, 100.0, start_time=990.0, reserve_for=lambda step: 10.0)
    first.begin()
    now[0] = 1030.0
    lr_then = first.epoch_lr(3)
    state = first.state_dict()
    assert state["budget_used"] == pytest.approx(40.0) and state["budget_loop_offset"] == pytest.approx(10.0)
    now[0] = 5000.0  # much later, a new process resumes
    second = schedule.ClockSchedule(0.01, 100.0, start_time=4998.0, reserve_for=lambda step: 10.0)
    second.load_state_dict(state)
    second.begin()
    # 2 s of start-up in the new process count against the budget: the fraction moved on by 2 of 80 s
    assert second.epoch_lr(3) == pytest.approx(poly_lr(0.01, 32 / 80, 1))
    assert lr_then == pytest.approx(poly_lr(0.01, 30 / 80, 1))
    now[0] = 5100.0
    assert second.step_lr(1, 1.0) is None  # time is up: the epoch ends
    assert second.after_epoch({"train_seconds": 1.0, "iterations": 1}) and second.finished(99)
    third = schedule.ClockSchedule(0.01, 100.0, start_time=5200.0, reserve_for=lambda step: 10.0)
    third.load_state_dict(second.state_dict())
    assert third.finished(0)  # a resume after the last epoch trains no further
    old = schedule.ClockSchedule(0.01, 100.0, start_time=5200.0, reserve_for=lambda step: 10.0)
    old.load_state_dict({"budget_used": 5.0, "budget_loop_offset": 1.0})  # a checkpoint from before budget_ended
    assert (old.used, old.loop_offset, old.finished(0)) == (5.0, 1.0, False)


def test_clock_schedule_records_planned_against_trained_steps(monkeypatch):
    """Issue 25: the plan timed 0.1 s per step; this run's loop has 90 s (100 s budget, 10 s reserve), so ~900 steps
    at that timing; it trains 600 steps at 0.15 s (the first epoch, slower with start-up, is left out of the measured
    speed), and the record says -33%. A resume keeps the first process's expectation."""
    import autoseg.training.config as config
    import autoseg.training.fit.schedule as schedule

    now = [1000.0]
    monkeypatch.setattr(schedule.time, "time", lambda: now[0])
    monkeypatch.setattr(config.BudgetClock, "__init__", _clock_init(now))
    sched = schedule.ClockSchedule(0.01, 100.0, start_time=1000.0, reserve_for=lambda step: 10.0,
                                   planned=(0.1, 500), say=None, plan_expected_steps=700)
    sched.begin()
    log = [{"train_seconds": 50.0, "iterations": 200}] + [{"train_seconds": 30.0, "iterations": 200}] * 2
    now[0] = 1090.0
    r = sched.record(log)
    assert (r["expected_steps_here"], r["plan_expected_steps"], r["trained_steps"]) == (900, 700, 600)
    assert r["trained_seconds_per_step"] == pytest.approx(0.15) and r["steps_vs_expected"] == pytest.approx(-1 / 3,
                                                                                                          abs=1e-3)
    assert r["loop_seconds_per_step"] == pytest.approx(0.15)
    assert r["epoch_seconds_per_step"] == [0.25, 0.15, 0.15]  # every epoch's speed, the first included
    assert "time for ~900 (-33%)" in sched.report(3, 600)
    later = schedule.ClockSchedule(0.01, 100.0, start_time=2000.0, reserve_for=lambda step: 50.0, planned=(0.1, 500))
    later.load_state_dict(sched.state_dict())
    later.begin()
    assert later.expected_here == 900
    # with the plan's loop time per step (each epoch's validation and bookkeeping shared by its steps), 0.12 s:
    # 90 s hold 750 steps
    loop = schedule.ClockSchedule(0.01, 100.0, start_time=1090.0, reserve_for=lambda step: 10.0,
                                  planned=(0.1, 500), say=None, planned_loop_step=0.12)
    loop.begin()
    assert loop.expected_here == 750


def _clock_init(now):
    def init(self, budget_seconds, start, reserve=0.0, now_fn=None):
        self.budget, self.start, self.reserve = float(budget_seconds), float(start), float(reserve)
        self.now = lambda: now[0]
        self.loop_start = self.now()
    return init


# Holds a fold's lock, forks a child that lives on (as a data worker would), says both PIDs, and waits for its stdin
# to close; the child too, so that neither outlives the test.
HOLDER = """import os, sys
from autoseg.core.locks import fold_lock
with fold_lock(__import__("pathlib").Path(sys.argv[1])):
    child = os.fork()
    if child == 0:
        sys.stdin.read()
        os._exit(0)
    print(os.getpid(), child, flush=True)
    sys.stdin.read()
"""


def test_fold_lock_refuses_a_live_holder_and_a_killed_one_never_blocks(tmp_path, capsys):
    """A second holder is refused at once, naming the PID; after kill -9 of the holder the lock is free at once,
    although its forked child lives on, and the lock file it left is taken over with a note."""
    from autoseg.core.locks import fold_lock

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        pid, child = map(int, holder.stdout.readline().split())
        refusal = f"{tmp_path}: another `autoseg train` (pid {pid}) is writing here"
        with pytest.raises(AutosegError, match=re.escape(refusal)):
            with fold_lock(tmp_path):
                pass
        holder.kill()
        holder.wait()
        os.kill(child, 0)  # the forked child is still alive
        assert (tmp_path / "train.lock").read_text().strip() == str(pid)  # left behind by the killed holder
        with fold_lock(tmp_path) as path:
            assert path.read_text().strip() == str(os.getpid())
            assert f"taking over the lock of pid {pid}, which is no longer running" in capsys.readouterr().out
        assert not path.exists()
    finally:
        holder.kill()
        holder.stdin.close()  # ends the child


def test_log_jsonl_is_rewritten_to_the_checkpoint_epochs(tmp_path):
    from autoseg.training.fit.callbacks import JsonLog
    from autoseg.training.fit.loop import LoopState

    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, 6)))  # a run killed after epoch 5
    log = JsonLog(path)
    log.on_train_begin(LoopState(epoch=3, log=[{"epoch": e} for e in (1, 2, 3)]))  # its last checkpoint: 3
    log.on_epoch_end(None, {"epoch": 4}, False, False)
    assert [json.loads(x)["epoch"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_atomic_writes_follow_the_umask_and_importing_changes_nothing(tmp_path):
    code = ("import os, sys; os.umask(0o027); import autoseg.api, autoseg.cli; "
            "from autoseg.core.jsonio import save_json; save_json({}, sys.argv[1]); print(oct(os.umask(0)))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.json")], check=True, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert res.stdout.strip() == "0o27"  # the process's umask is the one it set, after importing autoseg
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


@pytest.fixture(scope="module")
def run(tiny_phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("assembly") / "run"
    assert main(["plan", str(tiny_phantom), "--out", str(out), "-c", "2d", "-j", "1", "--no-preprocess"]) == 0
    return out


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--iters-per-epoch", "0"), ("--lr", "-5"),
                                         ("--batch-size", "-1"), ("--momentum", "2"), ("--optimizer", "adam")])
def test_train_refuses_bad_values_in_one_line(run, capsys, flag, value):
    assert main(["train", str(run), "-c", "2d", "-f", "0", flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and "out of range" in err and len(err.strip().splitlines()) == 1


def test_names_from_plans_and_splits_stay_inside_the_run(run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    good = (bad / "plans.json").read_text()
    plans = json.loads(good)
    plans["configurations"]["../../x"] = plans["configurations"]["2d"]
    (bad / "plans.json").write_text(json.dumps(plans))
    assert main(["train", str(bad), "-c", "../../x", "-f", "0"]) == 2
    assert "configuration name '../../x' is not allowed" in capsys.readouterr().err  # refused when plans load
    assert main(["train", str(run), "-c", "../../x", "-f", "0"]) == 2  # and as a name on the command line
    assert "'../../x' is not in the plans" in capsys.readouterr().err
    (bad / "plans.json").write_text(good)
    splits = json.loads((bad / "splits.json").read_text())
    splits[0]["val"][0] = "../../escape"
    (bad / "splits.json").write_text(json.dumps(splits))
    assert main(["train", str(bad), "-c", "2d", "-f", "0"]) == 2
    err = capsys.readouterr().err
    assert "splits.json" in err and "'../../escape'" in err
    (bad / "splits.json").write_text(json.dumps({"folds": 5}))
    assert main(["train", str(bad), "-c", "2d", "-f", "0"]) == 2
    assert "expected a list" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (bad.parent.parent / "x").exists()


def test_crossval_needs_every_fold(run, capsys):
    assert main(["crossval", str(run), "-c", "2d"]) == 2
    err = capsys.readouterr().err
    assert "fold(s) [0, 1, 2, 3, 4]" in err and "autoseg train" in err


@pytest.mark.parametrize("step,said,fewer", [(0.11, False, False), (0.2, True, False), (1.0, True, True)])
def test_clock_schedule_says_once_when_training_is_slower_than_planned(step, said, fewer):
    """A machine busier during training than while it was planned: one line (after the second epoch, the first
    includes warm-up) with the steps the budget will really give, and whether that is under the plan's minimum;
    within the timing noise, nothing."""
    import time

    from autoseg.training.fit.schedule import ClockSchedule

    lines = []
    sched = ClockSchedule(0.01, 1000.0, time.time(), lambda s: 0.0, planned=(0.1, 2000), say=lines.append)
    sched.begin()
    sched.after_epoch({"train_seconds": 2.0 * 100, "iterations": 100})  # a slow first epoch does not count
    assert lines == []
    for _ in range(3):
        sched.after_epoch({"train_seconds": step * 100, "iterations": 100})
    assert len(lines) == int(said)
    if said:
        import re

        assert abs(int(re.search(r"about (\d+) steps", lines[0]).group(1)) - 1000 / step) <= 2
        assert ("fewer than the 2000" in lines[0]) == fewer


@pytest.mark.parametrize("step,said,named", [(0.09, False, False), (0.07, True, False), (0.04, True, True)])
def test_clock_schedule_says_once_when_training_is_faster_than_planned(step, said, named):
    """A machine idler during training than while it was planned: one line with the steps the budget will give and,
    where the plan's candidates hold one, the more detailed configuration that would have had its minimum steps at
    the speed measured; within the timing noise, nothing."""
    import re
    import time

    from autoseg.training.fit.schedule import ClockSchedule

    lines, asked = [], []

    def affordable(speed):
        asked.append(speed)
        return "spacing [1.0, 1.0]" if speed < 0.5 else None

    sched = ClockSchedule(0.01, 1000.0, time.time(), lambda s: 0.0, planned=(0.1, 2000), say=lines.append,
                          affordable_at=affordable)
    sched.begin()
    sched.after_epoch({"train_seconds": 2.0 * 100, "iterations": 100})
    for _ in range(3):
        sched.after_epoch({"train_seconds": step * 100, "iterations": 100})
    assert len(lines) == int(said)
    if said:
        assert "less than the 0.100s the plan timed" in lines[0]
        assert abs(int(re.search(r"about (\d+) steps", lines[0]).group(1)) - 1000 / step) <= 2
        assert asked == [pytest.approx(step / 0.1)]
        assert ("more detailed configuration would have fitted (spacing [1.0, 1.0])" in lines[0]) == named
