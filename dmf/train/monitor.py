"""Per-step training scalars under stable keys: learning rate, gradient norm before clipping, throughput."""
import time

import torch
from lightning.pytorch import Callback


class TrainingMonitor(Callback):
    """train/lr, train/grad_norm (all parameters, before gradient_clip_val acts), train/img_per_s (per device)."""

    def __init__(self):
        self._t0 = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # Lightning calls this hook after backward and before it clips: the norm the clip sees
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            pl_module.log("train/grad_norm", norm)
        pl_module.log("train/lr", optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._t0 is not None:
            images = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            pl_module.log("train/img_per_s", images / max(time.perf_counter() - self._t0, 1e-9))
