"""Adaptive loss weighting with a learned log-variance."""
import torch

PAIRS = ("diagonal", "all")


def adaptive_loss(pred: torch.Tensor, target: torch.Tensor, logvar: torch.Tensor, eps: float = 0.01,
                  pairs: str = "diagonal") -> torch.Tensor:
    """log(mean_sq_err * exp(-logvar) + eps) + logvar, one value per sample (its mean is the loss).

    pairs=diagonal: sample i's error weighted by its own log-variance (the stated math).
    pairs=all: the authors' released code broadcasts the (B,) error against the (B,1,1,1) log-variance, i.e.
    every log-variance i is paired with every error j; value i is the mean over j, so the batch mean equals
    the mean over all B x B pairs.
    """
    mse = (pred - target).pow(2).flatten(1).mean(1)
    lv = logvar.flatten()
    if pairs == "diagonal":
        return torch.log(mse * torch.exp(-lv) + eps) + lv
    if pairs == "all":
        return (torch.log(mse[None, :] * torch.exp(-lv)[:, None] + eps) + lv[:, None]).mean(1)
    raise ValueError(f"objective.logvar_pairs={pairs!r} is not one of {' | '.join(PAIRS)}")
