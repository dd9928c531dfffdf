"""Timing training steps of candidate configurations, for the budget planner.

The planner asks "how many seconds does one training step of this candidate take here?" without importing
training or choosing a device: ``api.plan`` hands it ``step_timer(device)``. A candidate is anything with
``network_class_name``, ``arch_kwargs``, ``patch_size``, ``batch_size`` and ``dummy_2d``
(``autoseg.planner.budget.Candidate``).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..core.process import in_fresh_process
from ..networks import build_network
from .config import BUDGET_OPTIMIZER, DEFAULT_LR
from .fit.parts import default_workers, make_optimizer, outputs_to_fp32
from .objective.losses import DeepSupervisionLoss, DiceCELoss
from .sampling.augmentation import enlarged_patch_size, training_transforms

TIMED_STEPS = 6
GRAD_CLIP = 12.0  # TrainConfig's default: training clips every step, so the timed step does too


def training_step(c: Any, device: torch.device, batch_dice: bool = False, channels_last: bool = False,
                  autocast_dtype: torch.dtype | None = None, compile_network: bool = False,
                  batches: Iterator | None = None) -> Callable[[], None]:
    """One forward/backward/optimiser step of candidate ``c`` on fixed random data, as a function to time. Autocast
    defaults to bf16 on CUDA (as training does) and off elsewhere; the other switches exist to measure them. With
    ``batches``, each step takes its batch from that iterator (a data loader), as training does."""
    kw = dict(c.arch_kwargs)
    net = build_network(c.network_class_name, kw).to(device)
    loss_fn = DeepSupervisionLoss(DiceCELoss(batch_dice=batch_dice), kw["n_stages"] - 1)
    opt = make_optimizer(net.parameters(), BUDGET_OPTIMIZER, DEFAULT_LR[BUDGET_OPTIMIZER])  # what a budget trains with
    x = torch.randn(c.batch_size, kw["input_channels"], *c.patch_size, device=device)
    y = torch.randint(0, kw["num_classes"], (c.batch_size, 1, *c.patch_size), device=device)
    if channels_last:
        fmt = torch.channels_last if len(c.patch_size) == 2 else torch.channels_last_3d
        net, x = net.to(memory_format=fmt), x.to(memory_format=fmt)
    model = torch.compile(net) if compile_network else net
    if autocast_dtype is None and device.type == "cuda":
        autocast_dtype = torch.bfloat16

    def step() -> None:
        xb, yb = (x, y) if batches is None else (t.to(device) for t in next(batches))
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(xb)
        loss = loss_fn(outputs_to_fp32(out), yb)  # as training computes it
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
        opt.step()
        float(loss.detach())  # training reads the loss every step
    return step


def call_seconds(fn: Callable[[], None], device: torch.device | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one call of ``fn``; CUDA work is synchronised around it."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t = clock()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return clock() - t


def median_seconds(fn: Callable[[], None], device: torch.device, steps: int, warmup: int = 1) -> tuple[float, float]:
    """(median seconds of ``steps`` calls after ``warmup`` untimed-in-the-median calls, seconds of the first call)."""
    times = [call_seconds(fn, device) for _ in range(steps + warmup)]
    return float(np.median(times[warmup:])), times[0]


WINDOW_WARMUP_STEPS, WINDOW_MIN_STEPS = 5, 8


def window_seconds(fn: Callable[[], None], device: torch.device, seconds: float,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Mean seconds per call of ``fn`` over calls made for about ``seconds`` (at least ``WINDOW_MIN_STEPS``), after
    ``WINDOW_WARMUP_STEPS`` calls not counted (a data loader fills its prefetch queue then, competing for the cores).
    The mean, not the median: a slow step now and then (a worker's costly batch) is paid by training too."""
    for _ in range(WINDOW_WARMUP_STEPS):
        call_seconds(fn, device, clock)
    total, n = 0.0, 0
    while n < WINDOW_MIN_STEPS or total < seconds:
        total += call_seconds(fn, device, clock)
        n += 1
    return total / n


AUGMENT_BATCHES = 16


def time_augmentation(c: Any, batches: int = AUGMENT_BATCHES) -> float:
    """Mean seconds for a data worker to make one batch of ``c`` (random data of the enlarged patch that training
    cuts, augmented, turned into tensors), on one thread as a worker computes, over ``batches`` batches after one
    untimed. Each transform is drawn per sample with its probability (a spatial transform for about a third of the
    samples), so most batches are cheap and a few are not: the mean is what training pays per step. A median of
    three batches, timed before, was often a batch without a spatial transform: 0.003 s where DRIVE's mean is
    0.029 s, one reason its training steps ran 31% slower than the plan timed (benchmarks/README.md, issue 25).
    numpy's global random state (batchgenerators draws from it) is seeded for the timing and restored after."""
    state = np.random.get_state()
    try:
        return mean_batch_seconds(iter(RandomAugmentedBatches(c)), batches)
    finally:
        np.random.set_state(state)


def mean_batch_seconds(stream: Iterator, batches: int, warm: int = 1) -> float:
    """Mean seconds per batch of ``batches`` batches from ``stream`` after ``warm`` untimed ones, computed on one
    thread as a data worker computes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(warm):
            next(stream)
        t = time.perf_counter()
        for _ in range(batches):
            next(stream)
        return (time.perf_counter() - t) / batches
    finally:
        torch.set_num_threads(threads)


class RandomAugmentedBatches(torch.utils.data.IterableDataset):
    """Endless batches of random data of candidate ``c``'s sampled size, augmented as training augments them: what a
    data worker computes during training, without a dataset on disk."""

    def __init__(self, c: Any):
        super().__init__()
        self.c = c

    def __iter__(self):
        c, kw = self.c, dict(self.c.arch_kwargs)
        dim = len(c.patch_size)
        cut = enlarged_patch_size(c.patch_size, dim, c.dummy_2d)
        transforms = training_transforms(list(c.patch_size), dim, c.dummy_2d)
        rng = np.random.default_rng(0)
        np.random.seed(0)
        while True:
            batch = transforms(data=rng.standard_normal((c.batch_size, kw["input_channels"], *cut), np.float32),
                               seg=rng.integers(0, kw["num_classes"], (c.batch_size, 1, *cut)).astype(np.float32))
            yield (torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.float32)),
                   torch.from_numpy(np.ascontiguousarray(np.round(batch["seg"]), dtype=np.int64)))


def fed_step_seconds(c: Any, device: torch.device, autocast_dtype: torch.dtype | None, stream: Any, workers: int,
                     measure: Callable[[Callable[[], None]], float]) -> float:
    """``measure`` applied to training steps of ``c`` that take their batches from ``workers`` data-loading
    processes reading ``stream`` (with none, this process makes them), as in training. numpy's global random state
    (the batches seed it when made here) is left as it was found."""
    from .sampling.patches import make_loader

    state = np.random.get_state()
    loader = make_loader(stream, workers, False)
    batches = iter(loader)
    try:
        return measure(training_step(c, device, autocast_dtype=autocast_dtype, batches=batches))
    finally:
        del batches, loader
        np.random.set_state(state)


def pipeline_seconds(c: Any, device: torch.device, autocast_dtype: torch.dtype | None = None,
                     steps: int = TIMED_STEPS, warmup: int = 3, workers: int = 1) -> float:
    """Median seconds per step while ``workers`` data-loading processes augment the next batches, as in training:
    on a CPU they share the cores with the step's compute threads, so the step is slower than compute plus
    augmentation timed apart would say."""
    return fed_step_seconds(c, device, autocast_dtype, RandomAugmentedBatches(c), workers,
                            lambda step: median_seconds(step, device, steps, warmup)[0])


def alternating_medians(fns: list[Callable[[], None]], rounds: int, device: torch.device | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median seconds of each of ``fns``, called in turn for ``rounds`` rounds after one untimed round, so that load
    from other processes that comes and goes falls on each alike. Timed one after the other, a busier spell during
    the second timing made bf16 look 0.90x of fp32 on a CPU where it is about 0.7x, and the plan chose fp32 and a
    coarser configuration (benchmarks/README.md, issue 15)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            times[i].append(call_seconds(fn, device, clock))
    return [float(np.median(t)) for t in times]


SPEC_FIELDS = ("network_class_name", "arch_kwargs", "patch_size", "batch_size", "dummy_2d")


def candidate_spec(c: Any) -> dict:
    """What a step of candidate ``c`` is built from, as plain data that a fresh process can receive."""
    return {k: getattr(c, k) for k in SPEC_FIELDS}


def confirm_here(spec: dict, precision: str | None, seconds: float) -> float:
    """The CPU confirmation's window, in the process that calls it: memory kept as training keeps it, compute threads
    on the cores other processes leave free (both measured now, as training measures them when it starts), then the
    mean step of the candidate ``spec`` over about ``seconds``, fed by training's number of data workers, in
    ``precision``. ``StepTimer.confirm`` calls it in a fresh process, as training runs in one: in the planning
    process, after every other timing, it had been slower than the training that followed in 13 of 18 runs. The
    fresh process removes that difference; the machine's own minute-to-minute wander it cannot (benchmarks/README.md,
    issue 25)."""
    from types import SimpleNamespace

    from ..core.allocator import keep_freed_memory
    from ..core.cpu_share import use_free_cores
    from ..core.device import autocast_dtype

    cpu = torch.device("cpu")
    keep_freed_memory()
    use_free_cores()
    torch.manual_seed(0)
    c = SimpleNamespace(**spec)
    return fed_step_seconds(c, cpu, autocast_dtype(cpu, precision or "fp32"), RandomAugmentedBatches(c),
                            default_workers(cpu), lambda step: window_seconds(step, cpu, seconds))


COMPARE_ROUNDS = 10
BF16_GAIN = 0.85  # bf16 is used on a CPU only when its timed step takes at most this share of the fp32 step


class StepTimer:
    """Seconds per training step on ``device`` (``timer(candidate)``). On a CPU the data-loading workers share the
    cores with the network, so the time to augment a batch is added; on a GPU they run on other cores and overlap.
    On a CPU the steps are timed with the thread count training will use (the cores other processes leave free),
    and the first candidate timed (the planner's cheapest) is timed in fp32 and in bf16 autocast, in alternation
    (``alternating_medians``): where bf16 takes at most ``BF16_GAIN`` of the fp32 time (a CPU with native bf16,
    e.g. AVX-512 BF16 or AMX), every step is timed, trained and predicted in bf16; elsewhere (where bf16 is
    emulated, 15x slower on an AVX2 CPU) in fp32. ``precision`` says which, once a candidate was timed."""

    def __init__(self, device: torch.device, fresh_process: bool = True):
        self.device = device
        self.fresh_process = fresh_process  # the CPU confirmation in a process of its own (see confirm_here)
        self.precision: str | None = "bf16" if device.type == "cuda" else None  # CUDA: bf16 autocast, as nnU-Net
        self.fp32_seconds: float | None = None  # the comparison, when it was made
        self.bf16_seconds: float | None = None
        if device.type == "cpu":
            from ..core.allocator import keep_freed_memory
            from ..core.cpu_share import use_free_cores

            keep_freed_memory()  # as training keeps it: the steps timed are the steps trained
            use_free_cores()

    def __call__(self, c: Any) -> float:
        if self.precision is None:
            self.fp32_seconds, self.bf16_seconds = self._compare(c)
            self.precision = "bf16" if self.bf16_seconds <= BF16_GAIN * self.fp32_seconds else "fp32"
            t = self.bf16_seconds if self.precision == "bf16" else self.fp32_seconds
        else:
            t = self._step(c, torch.bfloat16 if self.precision == "bf16" else None)
        if self.device.type == "cpu":
            t += time_augmentation(c)
        return t

    def confirm(self, c: Any, seconds: float) -> float:
        """Seconds per step of ``c`` as training runs it, over about ``seconds``: on a CPU in a fresh process set up
        as training sets up its own (``confirm_here``), the steps taking their batches from training's own number
        of data workers augmenting random data of the candidate's size, so the workers' share of the cores is in
        the figure and not added; on a GPU the bare step, here. In the plan's precision. The mean over the steps
        after a warm-up, as training pays it (the planner's ``_confirmed``)."""
        if self.device.type != "cpu":
            torch.manual_seed(0)
            dtype = torch.bfloat16 if self.precision == "bf16" else None
            return window_seconds(training_step(c, self.device, autocast_dtype=dtype), self.device, seconds)
        if not self.fresh_process:
            return confirm_here(candidate_spec(c), self.precision, seconds)
        return in_fresh_process(confirm_here, candidate_spec(c), self.precision, seconds,
                                what=f"timing {c.describe() if hasattr(c, 'describe') else 'a candidate'}")

    def _step(self, c: Any, dtype: torch.dtype | None) -> float:
        torch.manual_seed(0)
        return median_seconds(training_step(c, self.device, autocast_dtype=dtype), self.device, TIMED_STEPS)[0]

    def _compare(self, c: Any) -> tuple[float, float]:
        """(fp32, bf16) seconds per step of ``c``, timed in alternation (on a CPU only)."""
        steps = []
        for dtype in (None, torch.bfloat16):
            torch.manual_seed(0)
            steps.append(training_step(c, self.device, autocast_dtype=dtype))
        fp32, bf16 = alternating_medians(steps, COMPARE_ROUNDS, self.device)
        return fp32, bf16

    def comparison(self) -> str:
        if self.fp32_seconds is None:
            return ""
        return (f"the cheapest candidate's step took {self.bf16_seconds:.3f}s in bf16 autocast and "
                f"{self.fp32_seconds:.3f}s in fp32 ({self.bf16_seconds / self.fp32_seconds:.2f}x; bf16 is used at "
                f"{BF16_GAIN:.2f}x or less)")


def step_timer(device: torch.device) -> StepTimer:
    """The planner's timer for ``device`` (see ``StepTimer``)."""
    return StepTimer(device)
