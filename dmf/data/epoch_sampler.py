"""A shuffling sampler whose order is a pure function of (seed, epoch), so a run resumed mid-epoch can skip
exactly the samples it already trained on (dmf.train.requeue.ResumeState tells it how many)."""
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples, self.seed, self.epoch, self._skip = num_samples, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch start
        self.epoch = epoch

    def skip_once(self, num_samples: int) -> None:
        """The next pass starts after its first `num_samples` indices (a resumed epoch)."""
        self._skip = num_samples

    def __iter__(self):
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        skip, self._skip = self._skip, 0
        return iter(order[skip:].tolist())

    def __len__(self) -> int:
        return self.num_samples
