"""LightningDataModules for latent data: the .npy folder, webdataset shards, synthetic latents.

Constructor arguments come from the data config's `datamodule:` node. `batch_size` is per process.
Under DDP, rank and world size come from the attached trainer: the folder dataset gets an EpochKeySampler
(dmf.data.epoch_sampler: order from `seed` and the epoch, split over ranks, resumable mid-epoch), the shard
dataset splits shards itself and resumes its per-(rank, worker) streams mid-epoch (see dmf.data.shards). Posterior
noise and flips are drawn per sample, seeded by (seed, epoch, the sample's place: dmf.data.sample_draws), so a
resumed run reads bit for bit what the uninterrupted one would have, with DataLoader workers too.
`images` (the data configs set it when objective.repa_weight > 0): batches are (image, latent, label), the uint8
images the latents were encoded from, for REPA's encoder; else the lean (latent, label).
"""
import logging
import warnings

import lightning as pl
import torch
from torch.utils.data import DataLoader

from dmf.core.ranks import rank_and_world
from dmf.data import layout as L
from dmf.data.epoch_sampler import EpochKeySampler
from dmf.data.errors import check_policy, no_images
from dmf.data.latent import expected_shape
from dmf.data.latent_folder import LatentFolderDataset
from dmf.data.resume_position import ResumePosition
from dmf.data.shards import ShardDataset
from dmf.data.synthetic import SyntheticLatentDataset

log = logging.getLogger(__name__)


def _worker_seeds(seed: int) -> torch.Generator:
    """The DataLoader's worker seeds come from here, not from a draw on torch's global RNG, which would shift the
    training process's RNG by one draw per epoch (and differently in a resumed run, whose RNG is restored first).
    Nothing the datasets yield depends on these seeds."""
    return torch.Generator().manual_seed(seed)


class EpochLoader(DataLoader):
    """Tells an iterable dataset its epoch before each pass (before workers are forked with a copy)."""

    def __init__(self, *args, start_epoch: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._next_epoch = start_epoch

    def __iter__(self):
        self.dataset.set_epoch(self._next_epoch)
        self._next_epoch += 1
        return super().__iter__()


class _LatentDataModule(ResumePosition, pl.LightningDataModule):
    def __init__(self, batch_size: int = 32, num_workers: int = 4, seed: int = 0, flip: bool = False,
                 on_error: str = "raise", scale: float = 0.18215, latent_channels: int | None = None,
                 latent_size: int | None = None, num_classes: int | None = None, pin_memory: bool = True,
                 persistent_workers: bool = True, prefetch_factor: int | None = 4, images: bool = False):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"data.datamodule.batch_size={batch_size} (per process) must be >= 1")
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.flip, self.on_error, self.scale = bool(flip), check_policy(on_error), float(scale)
        self.latent_channels, self.latent_size, self.num_classes = latent_channels, latent_size, num_classes
        self.pin_memory, self.persistent_workers, self.prefetch_factor = pin_memory, persistent_workers, prefetch_factor
        self.images = bool(images)
        self.dataset = None

    def rank_and_world(self) -> tuple[int, int]:
        return rank_and_world(self.trainer)

    def _loader_kwargs(self) -> dict:
        workers = self.num_workers > 0
        return dict(num_workers=self.num_workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
                    persistent_workers=self.persistent_workers and workers,
                    prefetch_factor=self.prefetch_factor if workers else None)


class _MapDataModule(_LatentDataModule):
    def train_dataloader(self) -> DataLoader:
        if self.dataset is None:
            self.setup("fit")
        # the epoch's order from (data.seed, epoch), split over ranks; a mid-epoch resume skips what was trained
        # (dmf.train.requeue.ResumeState). Lightning leaves a DistributedSampler as it is and calls its set_epoch.
        # It hands (epoch, index) to the dataset, which seeds each sample's noise and flip from them.
        sampler = self.epoch_sampler(EpochKeySampler, len(self.dataset), self.seed)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                          generator=_worker_seeds(self.seed), **self._loader_kwargs())


class LatentFolderDataModule(_MapDataModule):
    """The reference layout: <root>/vae-sd/*/img-mean-std-*.npy + dataset.json."""

    def __init__(self, root: str, check_files: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.root, self.check_files = root, check_files

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = LatentFolderDataset(
                self.root, self.scale, self.latent_channels, self.latent_size, self.num_classes, self.flip,
                self.on_error, self.check_files, self.images, self.seed)


class SyntheticDataModule(_MapDataModule):
    def __init__(self, num_samples: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.num_samples = int(num_samples)

    def setup(self, stage: str | None = None) -> None:
        if self.images:
            raise ValueError(no_images("data=synthetic", "random latents have no images"))
        if self.dataset is None:
            self.dataset = SyntheticLatentDataset(
                self.num_samples, self.latent_channels or 4, self.latent_size or 32, self.num_classes or 1000,
                self.scale, self.seed, self.flip)


class ShardDataModule(_LatentDataModule):
    """Webdataset shards: `root` (a folder with wds/manifest.json), or `urls` (brace pattern or list,
    any scheme webdataset opens, e.g. pipe:) together with `num_samples`."""

    def __init__(self, root: str | None = None, urls=None, num_samples: int | None = None,
                 resampled: bool = True, shuffle_buffer: int = 1000, **kwargs):
        super().__init__(**kwargs)
        if (root is None) == (urls is None):
            raise ValueError("ShardDataModule needs exactly one of root (a shard folder) or urls")
        self.root, self.urls, self.num_samples = root, urls, num_samples
        self.resampled, self.shuffle_buffer = bool(resampled), int(shuffle_buffer)
        self._urls: list[str] | None = None
        self._counts: dict[str, int] = {}

    def setup(self, stage: str | None = None) -> None:
        if self._urls is not None:
            return
        if self.root is not None:
            directory = L.wds_dir(self.root)
            manifest = L.read_json(directory / L.MANIFEST)
            if manifest.get("format") != L.MANIFEST_FORMAT:
                raise ValueError(f"{directory / L.MANIFEST}: format {manifest.get('format')!r}, expected "
                                 f"{L.MANIFEST_FORMAT!r}")
            want = expected_shape(self.latent_channels, self.latent_size)
            have = tuple(manifest["moments_shape"]) if manifest.get("moments_shape") else None
            if want is not None and have is not None and have != want:
                raise ValueError(f"{directory}: shards hold moments of shape {have} but the data config expects "
                                 f"{want}; pick the data config of their resolution")
            if self.images and not manifest.get("images"):
                raise ValueError(no_images(str(directory), f"{L.MANIFEST} says the shards carry no images"))
            if self.num_classes is not None and manifest["num_classes"] > self.num_classes:
                raise ValueError(f"{directory}: labels go up to {manifest['num_classes'] - 1} but "
                                 f"data.num_classes={self.num_classes}")
            self._urls = [str(directory / s["file"]) for s in manifest["shards"] if s["count"] > 0]
            self._counts = {str(directory / s["file"]): int(s["count"]) for s in manifest["shards"]}
            self.num_samples = self.num_samples or int(manifest["num_samples"])
        else:
            from webdataset.shardlists import expand_urls

            self._urls = expand_urls(self.urls) if isinstance(self.urls, str) else [str(u) for u in self.urls]
            if self.resampled and not self.num_samples:
                raise ValueError("with urls, set data.datamodule.num_samples (samples per epoch over all ranks)")
        if not self._urls:
            raise ValueError(f"no shards found ({self.root or self.urls})")

    def build_dataset(self, rank: int, world: int, epoch: int = 0) -> ShardDataset:
        self.setup()
        if not self.resampled and len(self._urls) < world * max(1, self.num_workers):
            log.warning("%d shards for %d ranks x %d workers: some get none; exact passes under DDP need "
                        "resampled=true or more shards", len(self._urls), world, self.num_workers)
        return ShardDataset(
            self._urls, self.scale, num_samples=self.num_samples, latent_channels=self.latent_channels,
            latent_size=self.latent_size, num_classes=self.num_classes, seed=self.seed,
            resampled=self.resampled, shuffle_buffer=self.shuffle_buffer, flip=self.flip,
            on_error=self.on_error, rank=rank, world_size=world, num_workers=self.num_workers,
            batch_size=self.batch_size, epoch=epoch, shard_counts=self._counts, images=self.images,
            accumulate=self.accumulation())

    def train_dataloader(self) -> DataLoader:
        # our __len__ is exact: every worker is told its share (ShardDataset.samples_per_worker)
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        rank, world = self.rank_and_world()
        epoch = self.loader_epoch()
        self.dataset = self.build_dataset(rank, world, epoch)
        done = self.samples_done(epoch)
        if done:  # resumed mid-epoch: every stream continues where it stopped
            self.dataset.skip_once(done)
        # resampled: every worker yields whole batches, the same count on every rank, so no drop needed
        return EpochLoader(self.dataset, batch_size=self.batch_size, drop_last=self.resampled,
                           start_epoch=epoch, generator=_worker_seeds(self.seed), **self._loader_kwargs())
