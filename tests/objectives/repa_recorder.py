"""A callback that tests add from the command line (+callbacks.record._target_=...): it records what REPA's frozen
encoder is fed at every step, beside the batch the data module delivered, so a test can compare both with the
images stored on disk."""
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class EncoderInputs(Callback):
    def __init__(self, path: str):
        self.path, self.batches, self.inputs = Path(path), [], []

    def on_train_start(self, trainer, module):
        encoder = module.objective.encoder
        forward = encoder.forward

        def recording(images):
            self.inputs.append(images.detach().cpu().clone())
            return forward(images)

        encoder.forward = recording  # an instance attribute: nn.Module.__call__ finds it first

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append([b.detach().cpu().clone() for b in batch])

    def on_train_end(self, trainer, module):
        self.path.mkdir(parents=True, exist_ok=True)
        torch.save({"batches": self.batches, "inputs": self.inputs}, self.path / f"rank{trainer.global_rank}.pt")
