"""Instance normalisation as nn.InstanceNorm vs nn.GroupNorm(C groups, C channels): same mathematics, different
kernels. Times forward+backward of the ACDC 2d and 3d_fullres networks (topology from the planner's rules),
interleaved, and prints medians and the ratio.

    python benchmarks/norm_bench.py [cpu|cuda] [repeats]
"""
import copy
import statistics
import sys
import time

import torch
import torch.nn as nn

from autoseg.planner import heuristics as H
from autoseg.planner.planner import _architecture

INSTANCE = (nn.InstanceNorm2d, nn.InstanceNorm3d)


def _swapped(net: nn.Module, kind: type, make) -> nn.Module:
    """A copy of ``net`` with every ``kind`` module replaced by ``make(module)``, weights carried over."""
    net = copy.deepcopy(net)

    def swap(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, kind):
                new = make(child)
                new.load_state_dict(child.state_dict())
                setattr(m, name, new)
            else:
                swap(child)

    swap(net)
    return net


def as_group_norm(net: nn.Module) -> nn.Module:
    return _swapped(net, INSTANCE, lambda c: nn.GroupNorm(c.num_features, c.num_features, eps=c.eps))


def as_instance_norm(net: nn.Module) -> nn.Module:
    cls = nn.InstanceNorm2d if net.dim == 2 else nn.InstanceNorm3d
    return _swapped(net, nn.GroupNorm, lambda c: cls(c.num_channels, eps=c.eps, affine=True))


def main(device: str = "cpu", repeats: int = 6) -> None:
    from autoseg.networks import build_network

    dev = torch.device(device)
    cases = {"2d": ((1.5625, 1.5625), (256, 216), 12 if dev.type == "cuda" else 4),
             "3d_fullres": ((10, 1.5625, 1.5625), (9, 256, 216), 2)}
    for name, (spacing, median, batch) in cases.items():
        topo, _ = H.fit_patch(spacing, median, 4, 8.0)
        arch = _architecture(len(spacing), topo, 1, 4)
        base = build_network(arch.network_class_name, arch.arch_kwargs)
        nets = {"InstanceNorm": as_instance_norm(base).to(dev), "GroupNorm(C,C)": as_group_norm(base).to(dev)}
        x = torch.randn(batch, 1, *topo.patch_size, device=dev)
        amp = dev.type == "cuda"

        def step(net, x=x, amp=amp):
            if amp:
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = net(x)
                loss = sum(o.float().mean() for o in out)
            loss.backward()
            net.zero_grad(set_to_none=True)
            if amp:
                torch.cuda.synchronize()
            return time.perf_counter() - t

        times = {k: [] for k in nets}
        for _ in range(2):
            for n in nets.values():
                step(n)
        for _ in range(repeats):
            for k, n in nets.items():
                times[k].append(step(n))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name} patch {list(topo.patch_size)} batch {batch} on {dev}: "
              + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in med.items())
              + f"; ratio GroupNorm/InstanceNorm {med['GroupNorm(C,C)'] / med['InstanceNorm']:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cpu", int(sys.argv[2]) if len(sys.argv) > 2 else 6)
