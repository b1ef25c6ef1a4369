"""Where a datamodule's training loader starts: at the position a restored checkpoint holds.

Lightning builds the training loader and creates its iterator before any training hook runs; with DataLoader workers
that iterator draws the sampler's order (or forks the iterable dataset's copies) at once. So the position is handed
over when the checkpoint is restored (dmf.train.requeue.ResumeState calls `resume_at`), and the loader built for that
epoch starts there, already at the right epoch."""
from dmf.core.ranks import rank_and_world
from dmf.data.epoch_sampler import EpochSampler


class ResumePosition:
    """A LightningDataModule mixin."""

    _resume_at: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples_done: int) -> None:
        """`samples_done` samples of epoch `epoch`, counted over all ranks, are trained already."""
        self._resume_at = (int(epoch), int(samples_done))

    def loader_epoch(self) -> int:
        """The epoch the loader built now first reads (the restored one, when resuming)."""
        return int(self.trainer.current_epoch) if self.trainer is not None else 0

    def samples_done(self, epoch: int) -> int:
        """What the loader built for `epoch` leaves out: the restored position in that epoch, once; else 0."""
        at, self._resume_at = self._resume_at, None
        return at[1] if at is not None and at[0] == epoch else 0

    def accumulation(self) -> int:
        """Batches per optimizer step (trainer.accumulate_grad_batches): an epoch of the loader is whole steps."""
        return int(getattr(self.trainer, "accumulate_grad_batches", 1) or 1) if self.trainer is not None else 1

    def epoch_sampler(self, cls: type[EpochSampler], num_samples: int, seed: int) -> EpochSampler:
        """This rank's sampler, at the loader's epoch and position (Lightning sets the epoch again, too late for
        workers that fetch ahead)."""
        epoch = self.loader_epoch()
        sampler = cls(num_samples, seed, *rank_and_world(self.trainer), group=self.batch_size * self.accumulation())
        sampler.set_epoch(epoch)
        sampler.skip_once(self.samples_done(epoch))
        return sampler
