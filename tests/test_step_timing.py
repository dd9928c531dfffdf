"""The step-timing harness (training/) that api.plan hands to the budget planner: it times a real training step of
a candidate, and adds the augmentation time on a CPU."""
import numpy as np
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
