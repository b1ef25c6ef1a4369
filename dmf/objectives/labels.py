"""Label dropout for classifier-free guidance: the null class is index num_classes."""
import torch


def drop_mask(n: int, p: float, device=None, generator=None) -> torch.Tensor:
    """Which of n labels to drop, each with probability p."""
    return torch.rand(n, device=device, generator=generator) < p


def apply_drop(y: torch.Tensor, dropped: torch.Tensor, null_class: int) -> torch.Tensor:
    return torch.where(dropped, torch.full_like(y, null_class), y)
