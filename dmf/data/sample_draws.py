"""Each training sample's randomness (its flip and its posterior noise) from a generator seeded by the run's seed, the
epoch and the sample's place in the epoch, never from a per-worker stream: the data a step sees then depends neither
on the DataLoader's worker count nor on where a run was stopped and resumed."""
import torch

from dmf.core.seeds import mix_seed
from dmf.data.latent import sample_latent

# sets these seeds apart from the run's other streams derived from the same seed (training draws: (seed, rank, step))
_TAG = 0x4C41544E


def sample_generator(seed: int, epoch: int, *place: int) -> torch.Generator:
    """`place`: what tells the sample apart within the epoch (the folder's index; a shard stream's (rank, stream,
    position))."""
    return torch.Generator().manual_seed(mix_seed(seed, _TAG, epoch, *place))


def draw_latent(moments, scale: float, flip: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, bool]:
    """(latent, flipped): the flip (when `flip` allows it) and then the posterior noise, both from `generator` (None:
    torch's global RNG)."""
    flipped = flip and bool(torch.rand((), generator=generator) < 0.5)
    return sample_latent(moments, scale, generator, flipped), flipped
