"""Processes for standalone evaluation: rank/world size from torchrun or SLURM, gloo on CPU and nccl on GPU;
plus the few collectives the generation loop uses (they are no-ops in a single process)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dmf.core.ranks import device_for, launch_ranks


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join (or start) the process group described by the environment; a single process needs nothing."""
    if dist.is_available() and dist.is_initialized():  # e.g. inside Lightning
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        return DistInfo(rank, world, local, device_for(device, local), False)
    ranks = launch_ranks()
    if ranks is None or ranks[1] == 1:
        return DistInfo(device=device_for(device, 0))
    rank, world, local = ranks
    dev = device_for(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    _set_rendezvous()
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev, True)


def _set_rendezvous() -> None:
    """MASTER_ADDR / MASTER_PORT for the process group: torchrun sets them; under `srun -n N` they come from the
    allocation as Lightning derives them (the first node, a port from the job id); a lone machine uses loopback."""
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        # Lightning's values, not its constructor: that refuses `srun -n N` (it wants --ntasks-per-node), which
        # this module's ranks (SLURM_PROCID / SLURM_NTASKS) do not need
        nodes = os.environ.get("SLURM_NODELIST")
        if nodes:
            os.environ.setdefault("MASTER_ADDR", SLURMEnvironment.resolve_root_node_address(nodes))
        if job_id := os.environ.get("SLURM_JOB_ID"):
            os.environ.setdefault("MASTER_PORT", str(15000 + int(job_id[-4:])))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")


def current() -> DistInfo:
    """This process's place in an already running process group (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier():
    if active():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """rank `src`'s value on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shutdown(info: DistInfo):
    if info.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
