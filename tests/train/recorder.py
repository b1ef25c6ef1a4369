"""A callback that tests add from the command line (+callbacks.record._target_=...): it writes, per rank, the
first batch, the first step's draws and (DDP-averaged, FSDP-gathered) gradients, and a digest of the final weights."""
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.distributed.tensor import DTensor


def whole(t: torch.Tensor) -> torch.Tensor:
    """A tensor as one process holds it; FSDP's shards are gathered (every rank calls this together)."""
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().clone()


class Recorder(Callback):
    def __init__(self, path: str):
        self.path, self.record = Path(path), {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0 and batch_idx == 0:
            self.record["batch"] = [b.detach().cpu().clone() for b in batch]

    def on_before_optimizer_step(self, trainer, module, optimizer):
        if trainer.global_step == 0:
            self.record["draws"] = {k: v.cpu().clone() for k, v in module._draws[1].items()}
            self.record["grads"] = {k: whole(p.grad) for k, p in module.net.named_parameters()
                                    if p.grad is not None}

    def on_train_end(self, trainer, module):
        self.record["final"] = {k: whole(v) for k, v in module.state_dict().items()}
        self.record["world_size"] = trainer.world_size
        self.path.mkdir(parents=True, exist_ok=True)
        torch.save(self.record, self.path / f"rank{trainer.global_rank}.pt")
