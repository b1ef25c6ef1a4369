"""A callback for tests (+callbacks.batches._target_=...): writes, per rank, every step's batches of this attempt
({step: [micro-batch, ...]}, each micro-batch its tensors; several per step under gradient accumulation)."""
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class BatchRecorder(Callback):
    def __init__(self, path: str):
        self.path, self.batches = Path(path), {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        step = self.batches.setdefault(trainer.global_step, [])
        step.append([b.detach().cpu().clone() for b in batch])

    def on_train_end(self, trainer, module):
        self.path.mkdir(parents=True, exist_ok=True)
        torch.save(self.batches, self.path / f"rank{trainer.global_rank}.pt")


def same_batches(a: list, b: list) -> bool:
    """Two recorded steps hold the same micro-batches, tensor for tensor."""
    return len(a) == len(b) and all(len(x) == len(y) and all(map(torch.equal, x, y)) for x, y in zip(a, b))
