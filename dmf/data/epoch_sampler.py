"""A shuffling sampler whose order is a pure function of (seed, epoch), split over the ranks, so that a run resumed
mid-epoch, on one process or several, skips exactly the samples it already trained on (dmf.train.requeue.ResumeState
tells it how many). EpochKeySampler also hands the epoch to the dataset, for draws seeded per sample."""
import torch
from torch.utils.data import DistributedSampler

from dmf.core.seeds import generator


class EpochSampler(DistributedSampler):
    """Rank r of W reads every W-th index of the epoch's permutation, starting at r, cut to whole rounds (every rank
    yields as many, as DDP needs). A DistributedSampler, so that Lightning uses it as it is instead of wrapping it
    in one of its own (whose order a resume could not reproduce)."""

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1, group: int = 1):
        """group: the samples each rank reads per optimizer step (batch per device x gradient accumulation). An
        epoch ends on a whole step: Lightning steps at an epoch's last batch even mid-accumulation, with the loss
        still divided by the full count, which would be one step at a fraction of the global batch per epoch."""
        super().__init__(range(num_samples), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.num_samples = self.num_samples // group * group  # what each rank reads (Lightning's len())
        self.total_size = self.num_samples * world_size
        self._skip = 0

    def skip_once(self, num_samples: int) -> None:
        """The next pass leaves out the first `num_samples` of the epoch's order, counted over all ranks (a resumed
        epoch): each rank continues its own stream where it stopped."""
        self._skip = num_samples

    def __iter__(self):
        # mixed, not seed + epoch: seed s epoch 1 would be seed s + 1's first epoch, a seed sweep's orders shifted
        order = torch.randperm(len(self.dataset), generator=generator("cpu", self.seed, self.epoch))
        rest, self._skip = order[self._skip:self.total_size], 0
        rounds = len(rest) // self.num_replicas
        return iter(rest[:rounds * self.num_replicas][self.rank::self.num_replicas].tolist())


class EpochKeySampler(EpochSampler):
    """Yields (epoch, index): the dataset seeds each sample's draws from it (dmf.data.sample_draws) in whichever
    DataLoader worker fetches it (persistent workers never see a set_epoch on the main process's copy)."""

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, i) for i in super().__iter__())
