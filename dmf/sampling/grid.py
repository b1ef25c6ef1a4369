"""Sampling time grids from t = 1 (noise) to t = 0 (data)."""
import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t -> s t / (1 + (s - 1) t): s > 1 spends more steps at high noise (used at 512 with s = 1.5)."""
    return shift * t / (1 + (shift - 1) * t)


def time_grid(steps: int, shift: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    if steps < 1:
        raise ValueError(f"sampler.steps={steps} must be >= 1")
    if shift <= 0:
        raise ValueError(f"sampler.shift={shift} must be > 0")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=dtype), shift)
