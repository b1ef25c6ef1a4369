"""One rule for deriving seeds: every stream in the project (data order, posterior noise, training draws,
evaluation images) is seeded by mixing the run's seed with what makes the stream distinct (rank, step, index)."""
import numpy as np
import torch


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on every value (SeedSequence hashing: nearby inputs decorrelate, unlike
    seed + rank, where seed s rank 1 equals seed s + 1 rank 0). Each value counts modulo 2**32: `seed` is checked to
    lie below (dmf.config)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def generator(device, *values: int) -> torch.Generator:
    """A torch generator on `device` seeded by mix_seed(*values)."""
    return torch.Generator(device=device).manual_seed(mix_seed(*values))
