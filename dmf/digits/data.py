"""The embedded dataset: scikit-learn's 1,797 real 8x8 handwritten digits, pixel space in [-1, 1]."""
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dmf.data.epoch_sampler import EpochSampler
from dmf.data.resume_position import ResumePosition


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Images (1797, 1, 8, 8) in [-1, 1] (sklearn's 0..16 gray levels) and labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def reference() -> TensorDataset:
    """The 1,797 real digits as (x, label), float (1, 8, 8) in [-1, 1]: the reference set of the task's metrics
    (conf/eval/ref_source/digits.yaml)."""
    return TensorDataset(*load_digits_tensors())


class DigitsDataModule(ResumePosition, L.LightningDataModule):
    def __init__(self, batch_size: int = 128, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def setup(self, stage=None):
        self.dataset = TensorDataset(*load_digits_tensors())

    def train_dataloader(self):
        # drop_last keeps every step at the configured batch size: 1,797 is prime-ish and steps stay comparable
        sampler = self.epoch_sampler(EpochSampler, len(self.dataset), self.seed)  # each rank its part
        return DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=sampler,
            drop_last=True, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds from here, not the global RNG
        )
