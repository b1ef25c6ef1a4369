"""Adaptive loss weighting with a learned log-variance (per sample)."""
import torch


def adaptive_loss(pred: torch.Tensor, target: torch.Tensor, logvar: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """log(mean_sq_err * exp(-logvar) + eps) + logvar, one value per sample.

    The reference broadcast a (B,) error against a (B,1,1,1) log-variance into a (B,1,1,B) matrix; the
    per-sample values are that matrix's diagonal, which is what we compute.
    """
    mse = (pred - target).pow(2).flatten(1).mean(1)
    lv = logvar.flatten()
    return torch.log(mse * torch.exp(-lv) + eps) + lv
