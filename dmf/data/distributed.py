"""Who am I (rank, DataLoader worker) and how to derive seeds from (seed, epoch, rank, worker)."""
import os

import numpy as np
import torch


def rank_and_world(trainer=None) -> tuple[int, int]:
    """Global rank and world size: from the Lightning trainer, else torch.distributed, else env."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def worker_and_count() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on every value (SeedSequence hashing: nearby inputs decorrelate)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])
