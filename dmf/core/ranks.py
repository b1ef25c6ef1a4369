"""Who am I in a distributed run: one place that reads the rank, world size and local rank."""
import os

import torch


def launch_ranks() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) as the launcher set them, before any process group exists: torchrun's
    RANK / WORLD_SIZE / LOCAL_RANK, else `srun -n N` (SLURM_PROCID / SLURM_NTASKS); None for a single process."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return (int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]),
                int(os.environ.get("SLURM_LOCALID", 0)))
    return None


def torchrun_layout() -> tuple[int, int] | None:
    """(processes per node, nodes) of a torchrun launch (it starts the processes itself); None otherwise."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or "LOCAL_WORLD_SIZE" not in os.environ:
        return None
    per_node = int(os.environ["LOCAL_WORLD_SIZE"])
    return per_node, int(os.environ.get("WORLD_SIZE", per_node)) // per_node


def rank_and_world(trainer=None) -> tuple[int, int]:
    """Global rank and world size: from the Lightning trainer, else torch.distributed, else the launcher."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    ranks = launch_ranks()
    return (ranks[0], ranks[1]) if ranks else (0, 1)


def local_rank() -> int:
    """This process's GPU index on its node."""
    ranks = launch_ranks()
    return ranks[2] if ranks else 0


def device_for(device: str | None, local: int | None = None) -> torch.device:
    """`auto` (or None): this process's GPU on its node (cuda:<local rank>) when there is one, else the CPU; any other
    value names the device."""
    if device and device != "auto":
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank() if local is None else local)
