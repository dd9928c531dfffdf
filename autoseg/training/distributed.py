"""Everything DistributedDataParallel needs, in one place: the per-rank agreement and reductions the loop calls
(``Sync``: a no-op for one process), wrapping the network, and starting the processes (``mp.spawn``; a torchrun
launcher would be another ``launch`` beside this one)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class Sync:
    """One process: nothing to agree on or reduce."""

    rank, world_size = 0, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        return flag

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank says so (a signal may reach one process only)."""
        return flag

    def reduce_epoch(self, counts: np.ndarray, losses: list[float], val_losses: list[float]):
        """Pseudo-Dice counts summed over ranks; losses averaged."""
        return counts, float(np.mean(losses)), (float(np.mean(val_losses)) if val_losses else float("nan"))

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return net


class DDPSync(Sync):
    def __init__(self, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = rank, world_size, device

    def agree(self, flag: bool) -> bool:
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def any(self, flag: bool) -> bool:
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def reduce_epoch(self, counts: np.ndarray, losses: list[float], val_losses: list[float]):
        import torch.distributed as dist

        t = torch.tensor(np.concatenate([counts.ravel(), [np.mean(losses), np.mean(val_losses)]]),
                         dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        t = t.cpu().numpy()
        return t[:-2].reshape(counts.shape), float(t[-2] / self.world_size), float(t[-1] / self.world_size)

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(net, device_ids=[self.rank] if device.type == "cuda" else None)


def rank_device(device: torch.device, rank: int, world_size: int) -> torch.device:
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    return device


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, use_cuda: bool, fn: Callable, args: tuple) -> None:
    import torch.distributed as dist

    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        fn(*args, rank=rank, world_size=world_size)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, args: tuple, world_size: int, use_cuda: bool) -> None:
    """Run ``fn(*args, rank=r, world_size=n)`` in ``world_size`` processes joined in one process group."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(world_size, _free_port(), use_cuda, fn, args), nprocs=world_size, join=True)
