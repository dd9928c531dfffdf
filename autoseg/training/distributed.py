"""Everything DistributedDataParallel needs, in one place: the per-rank agreement and reductions the loop calls
(``Sync``: a no-op for one process), wrapping the network, joining the process group from the environment torchrun
sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), and ``--num-gpus``, which starts the processes on one node
with torch's own elastic launcher (the engine of torchrun) so that both take one path."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..core.errors import AutosegError


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


def rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    """A CUDA process uses the GPU of its rank on its own node (LOCAL_RANK), not its global rank."""
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun (or torch's elastic launcher behind ``--num-gpus``) tells each process it starts."""

    rank: int
    local_rank: int
    world_size: int
    restart: int  # 0 on the first attempt; n after the group was restarted n times (--max-restarts)


ONE_PROCESS = LaunchEnv(rank=0, local_rank=0, world_size=1, restart=0)  # not started by a launcher, or alone


def launch_env() -> LaunchEnv | None:
    """The torchrun environment of this process, or None when it was not started by a torch launcher."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env or "MASTER_ADDR" not in env:
        return None
    try:
        return LaunchEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"])), int(env["WORLD_SIZE"]),
                         int(env.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError as e:
        raise AutosegError(f"torchrun environment: RANK/LOCAL_RANK/WORLD_SIZE must be integers ({e})") from None


def init_group(use_cuda: bool) -> None:
    """Join the process group from the launcher's environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE), as env://
    would, except that every attempt of the group gets its own key space in the store. torchrun's agent keeps
    one store across the restarts of ``--max-restarts``; with env:// the restarted ranks then read the dead
    ranks' addresses left in it and gloo failed to connect (or waited for its timeout) in about one restart of
    three here."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    env = launch_env()
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # the agent hosts the store
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env.world_size,
                          is_master=(not agent_store and env.rank == 0), multi_tenant=not agent_store)
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    store = dist.PrefixStore(f"autoseg/{run_id}/attempt_{env.restart}", store)
    dist.init_process_group("nccl" if use_cuda else "gloo", store=store, rank=env.rank, world_size=env.world_size)


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def close_group(ok: bool) -> None:
    """Leave the process group. After a successful run every rank first waits for the others: destroying the
    group is collective, and a rank that tore it down while rank 0 was still evaluating the validation was aborted
    by the C++ runtime. After a failure there is no waiting: the launcher stops the other ranks, and a barrier with
    a dead peer fails anyway."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if ok:
        barrier()
    dist.destroy_process_group()


@contextmanager
def process_group(use_cuda: bool) -> Iterator[None]:
    """Inside: this process is one rank of the launcher's group (``init_group``); on the way out it leaves the
    group, waiting for the others only when the body ended without an error (``close_group``)."""
    init_group(use_cuda)
    ok = False
    try:
        yield
        ok = True
    finally:
        close_group(ok)


def share(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (a decision made once, under the fold lock)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def elastic_run(fn: Callable, args: tuple, nprocs: int) -> None:
    """``--num-gpus N``: start ``fn(*args)`` in N processes on this node with torch's elastic launcher, exactly
    as ``torchrun --standalone --nproc-per-node N`` would (a c10d rendezvous on a port the store picks itself);
    each process then finds its rank in the environment, as under torchrun."""
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    cfg = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=f"autoseg-{uuid.uuid4().hex[:8]}",
                       rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(cfg, fn)(*args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        raise AutosegError(f"--num-gpus {nprocs}: training process of rank {rank} failed (exit code "
                           f"{failure.exitcode}); see its error above") from None


def write_state_digest(net: torch.nn.Module, rank: int) -> None:
    """Checks only: with ``AUTOSEG_STATE_DIGEST_DIR`` set, each rank writes the SHA-256 of its final weights to
    ``rank<R>.sha256`` there, so a test can see that every rank ended with the same network."""
    folder = os.environ.get("AUTOSEG_STATE_DIGEST_DIR")
    if not folder:
        return
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    Path(folder, f"rank{rank}.sha256").write_text(h.hexdigest() + "\n")
