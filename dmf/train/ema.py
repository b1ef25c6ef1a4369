"""Exponential moving average of a network's weights."""
import copy

import torch
from torch import nn
from torch.distributed.tensor import DTensor


def make_ema(net: nn.Module) -> nn.Module:
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        p = p.detach()
        if isinstance(p, DTensor):  # trainer=fsdp shards the online weights, not the EMA copy
            p = p.full_tensor()
        e.lerp_(p.to(e.dtype), 1.0 - decay)
    for e, b in zip(ema.buffers(), net.buffers()):
        e.copy_(b)


def ema_decay(step: int, decay: float, warmup: bool) -> float:
    """With warm-up, min(decay, (1 + n) / (10 + n)) so that short runs average over their own length."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay
