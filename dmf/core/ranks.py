"""Who am I in a distributed run: one place that reads the rank and world size."""
import os

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
