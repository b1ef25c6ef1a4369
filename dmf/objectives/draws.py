"""The random draws of one training step, made explicit so that they can be seeded per rank and step,
sliced across gradient-accumulation micro-batches and replayed in tests."""
import torch

Draws = dict[str, torch.Tensor]  # every entry has the batch as its first dimension


def gaussian(n: int, shape, like: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn((n, *shape), device=like.device, dtype=like.dtype, generator=generator)


def take(draws: Draws, start: int, stop: int) -> Draws:
    """The draws of samples start..stop-1."""
    return {k: v[start:stop] for k, v in draws.items()}


def concat(parts: list[Draws]) -> Draws:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
