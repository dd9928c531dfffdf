"""bf16 autocast on a CPU: the budget planner's timer compares fp32 and bf16 once and keeps the faster (bf16 only
by a clear margin), the plan records it, and training steps and inference passes run in what the plan says."""
import json

import pytest
import torch

from autoseg.core.device import autocast_dtype, plan_precision
from autoseg.core.errors import AutosegError
from autoseg.inference.sliding_window import sliding_window_logits
from autoseg.planner import budget as B
from autoseg.planner.plans import Plans
from autoseg.training import step_timing as T
from autoseg.training.fit.parts import Stepper


def _tiny():
    c = B.candidates([2.0, 2.0], [32, 32], 2, 1, 3, coarsen_all=True)
    return min(c, key=lambda x: x.macs * x.batch_size)


@pytest.mark.parametrize("bf16_seconds,precision,first", [(0.5, "bf16", 0.5), (0.9, "fp32", 1.0)])
def test_timer_compares_once_and_keeps_bf16_only_when_clearly_faster(monkeypatch, bf16_seconds, precision, first):
    calls = []

    def fake_step(self, c, dtype):
        calls.append(dtype)
        return bf16_seconds if dtype == torch.bfloat16 else 1.0

    def fake_compare(self, c):
        calls.extend([None, torch.bfloat16])
        return 1.0, bf16_seconds

    monkeypatch.setattr(T.StepTimer, "_step", fake_step)
    monkeypatch.setattr(T.StepTimer, "_compare", fake_compare)
    monkeypatch.setattr(T, "time_augmentation", lambda c, batches=16: 0.25)
    timer = T.StepTimer(torch.device("cpu"))
    assert timer.precision is None and timer.comparison() == ""
    assert timer(_tiny()) == pytest.approx(first + 0.25)  # the augmentation is added on a CPU
    assert timer.precision == precision and calls == [None, torch.bfloat16]
    assert f"{bf16_seconds:.3f}s in bf16" in timer.comparison()
    timer(_tiny())  # later candidates are timed in the chosen precision only
    assert calls[2:] == [torch.bfloat16 if precision == "bf16" else None]


def test_alternating_timing_shares_a_change_of_load_between_both():
    """Other work doubles the cost of everything halfway through the timing: one after the other, the second
    function would look twice as slow; in alternation both see the same load, and their ratio stays 0.7."""
    now = [0.0]
    calls = [0]

    def work(cost):
        def fn():
            calls[0] += 1
            now[0] += cost * (1.0 if calls[0] <= 12 else 2.0)
        return fn

    fp32, bf16 = T.alternating_medians([work(1.0), work(0.7)], rounds=11, clock=lambda: now[0])
    assert bf16 / fp32 == pytest.approx(0.7)
    assert calls[0] == 2 * 12  # one untimed round, then 11 timed


def test_real_timer_chooses_a_precision_here():
    """Whatever this CPU does natively, the real timer ends with one of the two and a positive time."""
    timer = T.step_timer(torch.device("cpu"))
    assert timer(_tiny()) > 0 and timer.precision in ("fp32", "bf16")
    assert "fp32" in timer.comparison()


class _FakeTimer:
    def __init__(self, precision):
        self.precision = precision

    def __call__(self, c):
        return 0.01

    def comparison(self):
        return "timed both (fake)"


def test_budget_record_keeps_the_precision_and_rejects_others(small_run):
    plans = Plans.load(small_run / "plans.json")
    for timer, want in ((_FakeTimer("bf16"), "bf16"), (lambda c: 0.01, "fp32")):
        cfg = B.apply_budget(plans, 600, "cpu", 10, timer=timer, verbose=False).configurations["2d"]
        assert cfg.budget.precision == want and plan_precision(cfg) == want
        assert any(r.startswith("precision bf16: timed both") for r in cfg.reasons) == (want == "bf16")
    bf = B.apply_budget(plans, 600, "cpu", 10, timer=_FakeTimer("bf16"), verbose=False)
    bf.save(small_run / "plans.json")
    assert Plans.load(small_run / "plans.json").configuration("2d").budget.precision == "bf16"
    assert plan_precision(plans.configuration("2d")) == "fp32"  # no budget: fp32
    import dataclasses

    gpu = B.apply_budget(plans, 600, "cuda:0", 10, timer=_FakeTimer("bf16"), verbose=False).configurations["2d"]
    assert gpu.budget.precision == "bf16" and plan_precision(gpu) == "fp32"  # a GPU's bf16 says nothing of a CPU
    assert plan_precision(dataclasses.replace(gpu, budget=dataclasses.replace(gpu.budget, device="cpu"))) == "bf16"
    d = json.loads((small_run / "plans.json").read_text())
    d["configurations"]["2d"]["budget"]["precision"] = "fp16"
    with pytest.raises(AutosegError, match=r"budget\.precision"):
        Plans.from_dict(d)


def test_autocast_dtype_by_device_and_precision():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    assert autocast_dtype(cpu, "fp32") is None and autocast_dtype(cpu) is None


class _Probe(torch.nn.Module):
    """A 1x1 convolution that records the autocast state it ran under."""

    def __init__(self, k=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, k, 1)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return self.conv(x)


@pytest.mark.parametrize("precision,expect", [("bf16", torch.bfloat16), ("fp32", False)])
def test_stepper_runs_the_network_in_the_plans_precision_and_the_loss_in_fp32(precision, expect):
    net = _Probe()
    got = {}

    def loss(out, y):
        got["dtype"] = out.dtype
        return out.mean()

    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    st = Stepper(net, opt, loss, torch.device("cpu"), amp=True, grad_clip=12.0, precision=precision)
    assert st.amp_dtype == (expect or None)
    st.train_step(torch.randn(2, 1, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long))
    assert net.seen == [expect] and got["dtype"] == torch.float32
    off = Stepper(net, opt, loss, torch.device("cpu"), amp=False, grad_clip=12.0, precision=precision)
    assert off.amp_dtype is None  # --no-amp


def test_sliding_window_runs_under_the_given_autocast_and_sums_in_fp32():
    net = _Probe(3)
    x = torch.randn(1, 1, 20, 20)
    plain = sliding_window_logits(net, x, (16, 16), 3, mirror=False)
    assert set(net.seen) == {False}
    net.seen.clear()
    half = sliding_window_logits(net, x, (16, 16), 3, mirror=False, autocast=torch.bfloat16)
    assert set(net.seen) == {torch.bfloat16} and half.dtype == torch.float32
    assert torch.allclose(half, plain, atol=0.05) and not torch.equal(half, plain)  # bf16 rounding, nothing more


@pytest.mark.slow  # a 15 s budget training, then predict
def test_a_bf16_plan_trains_and_predicts_in_bf16(small_run, tiny_phantom, tmp_path, monkeypatch, capsys):
    """End to end on the phantom: a budget plan that chose bf16 trains in it (and says so) and its validation and
    predict run the network under bf16 autocast."""
    from autoseg.cli import main
    from autoseg.inference import predictor as P

    plans = Plans.load(small_run / "plans.json")
    B.apply_budget(plans, 40, "cpu", 10, timer=_FakeTimer("bf16"), verbose=False).save(small_run / "plans.json")
    seen = []
    real = P.sliding_window_logits
    monkeypatch.setattr(P, "sliding_window_logits", lambda *a, **k: seen.append(k.get("autocast")) or real(*a, **k))
    assert main(["preprocess", str(small_run), "-c", "2d"]) == 0
    assert main(["train", str(small_run), "-c", "2d", "-f", "0", "--budget", "15s", "--num-workers", "0",
                 "--iters-per-epoch", "5"]) == 0
    assert "training steps run in bf16 autocast on this CPU" in capsys.readouterr().out
    assert seen and set(seen) == {torch.bfloat16}  # the fold's final validation
    log = [json.loads(line) for line in (small_run / "2d" / "fold_0" / "log.jsonl").read_text().splitlines()]
    assert all(r["train_loss"] == r["train_loss"] for r in log)  # finite (not NaN)
    seen.clear()
    out = tmp_path / "pred"
    assert main(["predict", str(small_run), "-i", str(tiny_phantom / "imagesTs"), "-o", str(out), "-c", "2d",
                 "-f", "0"]) == 0
    assert seen and set(seen) == {torch.bfloat16} and any(out.glob("*.nii.gz"))
