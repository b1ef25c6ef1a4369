"""A callback for tests (+callbacks.batches._target_=...): writes, per rank, every step's batch of this attempt."""
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class BatchRecorder(Callback):
    def __init__(self, path: str):
        self.path, self.batches = Path(path), {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches[trainer.global_step] = [b.detach().cpu().clone() for b in batch]

    def on_train_end(self, trainer, module):
        self.path.mkdir(parents=True, exist_ok=True)
        torch.save(self.batches, self.path / f"rank{trainer.global_rank}.pt")
