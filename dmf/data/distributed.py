"""Which DataLoader worker am I (ranks and seeds live in dmf.core)."""
import torch


def worker_and_count() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)
