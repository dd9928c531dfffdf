"""The plan's confirmation window on a budget run's chosen configuration, four ways (issue 25): random batches (as
the plan times) or real batches from the run's preprocessed cases, each with torch's flush-denormal off and on,
every window in a fresh process with freed memory kept, alternating for ``--rounds`` rounds. Also the data
worker's share of a core (the children's CPU time over the window's wall time).

    python benchmarks/window_probe.py RUN [-c 2d] [--rounds 2] [--window 15]

Run it on an otherwise idle machine."""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from step_timing_gap import candidate, real_stream  # noqa: E402

from autoseg.core.allocator import keep_freed_memory  # noqa: E402
from autoseg.core.cpu_share import use_free_cores  # noqa: E402
from autoseg.core.device import autocast_dtype  # noqa: E402
from autoseg.core.progress import format_table  # noqa: E402
from autoseg.training.fit.parts import default_workers  # noqa: E402
from autoseg.training.step_timing import RandomAugmentedBatches, fed_step_seconds, window_seconds  # noqa: E402

KINDS = [(stream, ftz) for stream in ("random", "real") for ftz in ("off", "on")]


def child(run: Path, config: str, stream_kind: str, ftz: bool, seconds: float) -> dict:
    cfg = json.loads((run / "plans.json").read_text())["configurations"][config]
    keep_freed_memory()
    use_free_cores()
    if ftz and not torch.set_flush_denormal(True):
        raise SystemExit("this CPU cannot flush denormals")
    cpu = torch.device("cpu")
    dtype = autocast_dtype(cpu, cfg.get("budget", {}).get("precision", "fp32"))
    c = candidate(cfg)
    stream = RandomAugmentedBatches(c) if stream_kind == "random" else real_stream(run, config, cfg, c)
    t0 = time.perf_counter()
    step = fed_step_seconds(c, cpu, dtype, stream, default_workers(cpu), lambda s: window_seconds(s, cpu, seconds))
    wall = time.perf_counter() - t0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the loader's workers, joined by now
    return {"step": step, "worker_share": (workers.ru_utime + workers.ru_stime) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-c", "--configuration", default="2d")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.run, a.configuration, a.child[0], a.child[1] == "on", a.window)))
        return
    results: dict[tuple[str, str], list[dict]] = {k: [] for k in KINDS}
    for r in range(a.rounds):
        for kind, ftz in KINDS:
            out = subprocess.run([sys.executable, __file__, str(a.run), "-c", a.configuration, "--window",
                                  str(a.window), "--child", kind, ftz], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{kind}, flush-denormal {ftz}: the window failed:\n{out.stderr[-2000:]}")
            d = json.loads(out.stdout.strip().splitlines()[-1])
            results[(kind, ftz)].append(d)
            print(f"round {r + 1}/{a.rounds} {kind} batches, flush-denormal {ftz}: {d['step']:.3f} s/step, "
                  f"worker {d['worker_share']:.0%} of a core", flush=True)
    rows = [[kind, ftz, " / ".join(f"{d['step']:.3f}" for d in v), f"{statistics.median(d['step'] for d in v):.3f}",
             f"{statistics.median(d['worker_share'] for d in v):.0%}"] for (kind, ftz), v in results.items()]
    print(format_table(["batches", "flush-denormal", "s/step by round", "median", "worker share"], rows))


if __name__ == "__main__":
    main()
