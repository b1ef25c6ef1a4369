"""Synthetic latent moments: same interface as the real latent sets, no files, for tests and benchmarks."""
import torch
from torch.utils.data import Dataset

from dmf.core.seeds import mix_seed
from dmf.data.sample_draws import draw_latent, sample_generator


class SyntheticLatentDataset(Dataset):
    """Item i: label i % num_classes; moments drawn from a generator seeded by (seed, i), so the "image"
    behind item i never changes while its posterior sample does on every fetch, as with real latents.
    Means carry a fixed per-class pattern (something class-conditional to learn); after scaling the
    latents have about unit variance, like SD-VAE latents times 0.18215. Fetched by (epoch, i), the posterior draw and
    flip are seeded by (seed, epoch, i), as in LatentFolderDataset."""

    def __init__(self, num_samples: int = 1024, latent_channels: int = 4, latent_size: int = 32,
                 num_classes: int = 1000, scale: float = 0.18215, seed: int = 0, flip: bool = False):
        self.n, self.c, self.s = int(num_samples), int(latent_channels), int(latent_size)
        self.num_classes, self.scale, self.seed, self.flip = int(num_classes), float(scale), int(seed), bool(flip)
        gen = torch.Generator().manual_seed(mix_seed(seed, -1))
        self.patterns = torch.randn(self.num_classes, self.c, self.s, self.s, generator=gen) * 0.6

    def __len__(self) -> int:
        return self.n

    def moments(self, i: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, i))
        label = i % self.num_classes
        mean = (torch.randn(self.c, self.s, self.s, generator=gen) * 0.75 + self.patterns[label]) / self.scale
        std = torch.full_like(mean, 0.1 / self.scale)
        return torch.cat([mean, std])

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, i = key if isinstance(key, tuple) else (None, key)
        generator = None if epoch is None else sample_generator(self.seed, epoch, i)
        return draw_latent(self.moments(i), self.scale, self.flip, generator)[0], i % self.num_classes
