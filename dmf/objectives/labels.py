"""Label dropout for classifier-free guidance: the null class is index num_classes."""
import torch


def drop_labels(y: torch.Tensor, p: float, null_class: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels with a fraction p replaced by the null class, the boolean mask of dropped labels)."""
    dropped = torch.rand(y.shape, device=y.device, generator=generator) < p
    return torch.where(dropped, torch.full_like(y, null_class), y), dropped
