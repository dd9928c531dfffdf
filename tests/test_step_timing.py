"""The step-timing harness (training/) that api.plan hands to the budget planner: it times a real training step of
a candidate, and adds the augmentation time on a CPU."""
import numpy as np
import pytest
import torch

from autoseg.planner import budget as B
from autoseg.training import step_timing as T


def _tiny(dummy_2d=False):
    c = B.candidates([2.0, 2.0], [32, 32], 2, 1, 3, coarsen_all=True, dummy_2d=dummy_2d)
    return min(c, key=lambda x: x.macs * x.batch_size)


def test_training_step_of_the_candidates_network():
    """The harness builds the network the candidate names (a ResEnc candidate times a ResEnc network)."""
    import dataclasses

    from autoseg.networks import network_args

    c = _tiny()
    kw = dict(c.arch_kwargs)
    kw["n_blocks_per_stage"] = kw.pop("n_conv_per_stage")
    res = dataclasses.replace(c, network_class_name="ResidualEncoderUNet",
                              arch_kwargs=network_args("ResidualEncoderUNet", kw))
    for cand in (c, res):
        t, first = T.median_seconds(T.training_step(cand, torch.device("cpu")), torch.device("cpu"), 2)
        assert t > 0 and first > 0
    built = []
    orig = T.build_network
    try:
        T.build_network = lambda name, kw: built.append(name) or orig(name, kw)
        T.training_step(res, torch.device("cpu"))
    finally:
        T.build_network = orig
    assert built == ["ResidualEncoderUNet"]


def test_cpu_timer_adds_the_augmentation():
    c = _tiny()
    calls = []
    orig = T.time_augmentation
    try:
        T.time_augmentation = lambda cand, batches=16: calls.append(cand) or 100.0
        t = T.step_timer(torch.device("cpu"))(c)
    finally:
        T.time_augmentation = orig
    assert calls == [c] and 100.0 < t < 100.0 + 60


def test_window_is_the_mean_after_the_warm_up_for_at_least_the_window():
    """Warm-up calls (a loader filling its queue) are not counted; the mean over the window, not the median, since
    training pays the odd slow step; at least WINDOW_MIN_STEPS calls even when each is longer than the window."""
    costs = iter([9.0] * T.WINDOW_WARMUP_STEPS + [1.0, 1.0, 4.0] * 100)
    now = [0.0]

    def clock():
        return now[0]

    def fn():
        now[0] += next(costs)

    assert T.window_seconds(fn, torch.device("cpu"), 24.0, clock) == pytest.approx(2.0)  # 1, 1, 4 x 4 rounds
    costs = iter([0.0] * T.WINDOW_WARMUP_STEPS + [5.0] * 100)
    assert T.window_seconds(fn, torch.device("cpu"), 1.0, clock) == pytest.approx(5.0)
    assert next(costs) == 5.0 and sum(1 for _ in costs) == 100 - T.WINDOW_MIN_STEPS - 1


def test_cpu_confirmation_feeds_the_steps_from_a_data_worker(monkeypatch):
    """The confirmation runs the step on batches from training's own number of workers (one on a 2-core CPU) in
    the plan's precision, and adds no separate augmentation time."""
    c = _tiny()
    timer = T.StepTimer(torch.device("cpu"), fresh_process=False)  # here, so that the patches below reach it
    timer.precision = "fp32"
    made, used = [], []
    real_loader = __import__("autoseg.training.sampling.patches", fromlist=["make_loader"]).make_loader

    def loader(stream, workers, pin):
        made.append(workers)
        return real_loader(stream, workers, pin)

    real_step = T.training_step

    def step(cand, device, **kw):
        used.append(kw.get("batches") is not None)
        return real_step(cand, device, **kw)

    monkeypatch.setattr("autoseg.training.sampling.patches.make_loader", loader)
    monkeypatch.setattr(T, "training_step", step)
    monkeypatch.setattr(T, "time_augmentation", lambda cand, batches=16: 100.0)
    before = np.random.get_state()[1].copy()
    t = timer.confirm(c, 0.2)
    assert made == [T.default_workers(torch.device("cpu"))] and used == [True]
    assert 0 < t < 5
    monkeypatch.setattr(T, "default_workers", lambda device: 0)  # one core: the batches are made in this process
    timer.confirm(c, 0.2)
    assert made[-1] == 0 and np.array_equal(np.random.get_state()[1], before)  # numpy's state left as it was



def test_cpu_confirmation_runs_in_a_fresh_process(monkeypatch):
    """By default the CPU confirmation is timed in a process of its own, as training runs in one: a window timer
    patched here (answering 999 s) is not the one that times it; with ``fresh_process=False`` it is."""
    c = _tiny()
    monkeypatch.setattr(T, "window_seconds", lambda fn, device, seconds, clock=None: 999.0)
    timer = T.step_timer(torch.device("cpu"))
    timer.precision = "fp32"
    assert 0 < timer.confirm(c, 0.2) < 5
    timer.fresh_process = False
    assert timer.confirm(c, 0.2) == 999.0


def test_augmentation_time_of_a_3d_candidate_with_2d_augmentation():
    c = B.candidates([6.0, 2.0, 2.0], [8, 32, 32], 2, 1, 3, coarsen_all=False, dummy_2d=True)[-1]
    assert c.dummy_2d and len(c.patch_size) == 3
    assert np.isfinite(T.time_augmentation(c, batches=1))


def test_augmentation_time_is_the_mean_that_rare_costly_batches_raise(monkeypatch):
    """Three batches in four cost nothing and the fourth 80 ms (a spatial transform drawn for a third of the samples
    makes batches like that): training pays 20 ms per batch on average, which a median would have called 0. The
    timing leaves numpy's global random state (batchgenerators draws from it) as it found it."""
    import time

    class Stream:
        def __init__(self, c):
            self.c = c

        def __iter__(self):
            k = 0
            while True:
                np.random.uniform()  # draws from the global state, as batchgenerators does
                if k % 4 == 3:
                    time.sleep(0.08)
                k += 1
                yield k

    monkeypatch.setattr(T, "RandomAugmentedBatches", Stream)
    np.random.seed(123)
    expected_next = np.random.uniform()
    np.random.seed(123)
    t = T.time_augmentation(_tiny(), batches=8)  # batches 2-9 of the stream: two costly ones
    assert 0.017 < t < 0.03
    assert np.random.uniform() == expected_next
