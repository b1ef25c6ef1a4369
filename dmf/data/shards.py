"""Iterable dataset over webdataset .tar shards of moments (see dmf.data.layout for the format).

Splitting and seeding, for rank r of W and DataLoader worker k of K, in epoch e:
- resampled (training): each (r, k) draws shards with replacement from its own RNG seeded by
  (seed, e, r, k) and stops after the same number of samples (`with_epoch`): ranks see distinct data,
  every rank yields the same number of batches (no DDP hang on uneven shards), and a run is
  reproducible from (seed, epoch).
- not resampled (exact passes): one shard permutation seeded by (seed, e), shared by all, then
  shards[r::W][k::K]: every sample exactly once per epoch over all ranks and workers.
The shuffle buffer uses an RNG seeded the same way; each sample's flip and posterior noise come from a generator
seeded by (seed, e, r, k, the sample's position in the stream) (dmf.data.sample_draws), so a stream is a pure
function of (seed, e, r, k) and of nothing else.

Resuming mid-epoch (resampled): `skip_once` (called by the datamodule with the position that
dmf.train.requeue.ResumeState restored) makes the next pass continue each stream where it stopped. Worker k's stream
yields batches k, k+K, ... of its rank; after p batches the resumed pass's worker k plays stream (p+k) mod K (the
stream of batch p+k) and leaves out the samples that stream already yielded.
Those are read from their shards and run through the shuffle buffer (its state depends on them) but not decoded
(with on_error=skip they are: whether a sample is bad decides the stream's positions).
With `images`, samples are (uint8 image (3, R, R), latent, label): the .image.png member, flipped with the latent.
"""
import logging
import math
import random

import torch
from torch.utils.data import IterableDataset

from dmf.core.seeds import mix_seed
from dmf.data.distributed import worker_and_count
from dmf.data.errors import DataError, ErrorPolicy, no_images
from dmf.data.images import decode_image
from dmf.data.latent import check_moments, expected_shape, load_npy
from dmf.data.layout import IMAGE_MEMBER
from dmf.data.sample_draws import draw_latent, sample_generator
from dmf.data.tario import iter_samples

log = logging.getLogger(__name__)


def shuffled(items, bufsize: int, rng: random.Random):
    """Streaming shuffle: a buffer of `bufsize`; each new item replaces a random one, which is yielded."""
    if bufsize <= 1:
        yield from items
        return
    buf = []
    for item in items:
        if len(buf) < bufsize:
            buf.append(item)
            continue
        k = rng.randrange(bufsize)
        yield buf[k]
        buf[k] = item
    rng.shuffle(buf)
    yield from buf


class ShardDataset(IterableDataset):
    def __init__(self, urls: list[str], scale: float = 0.18215, *, num_samples: int | None = None,
                 latent_channels: int | None = None, latent_size: int | None = None,
                 num_classes: int | None = None, seed: int = 0, resampled: bool = True,
                 shuffle_buffer: int = 1000, flip: bool = False, on_error: str = "raise", rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, batch_size: int = 1, epoch: int = 0,
                 shard_counts: dict[str, int] | None = None, images: bool = False, accumulate: int = 1):
        if not urls:
            raise ValueError("ShardDataset needs at least one shard")
        if resampled and not num_samples:
            raise ValueError("resampled shards need num_samples (the epoch length) to stop each epoch")
        self.urls, self.scale, self.num_samples = list(urls), float(scale), num_samples
        self.shape = expected_shape(latent_channels, latent_size)
        self.num_classes, self.seed, self.resampled = num_classes, int(seed), bool(resampled)
        self.shuffle_buffer, self.flip = int(shuffle_buffer), bool(flip)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_workers, self.batch_size, self.accumulate = int(num_workers), int(batch_size), int(accumulate)
        self.policy = ErrorPolicy(on_error, where=f"shards (rank {rank})")
        # samples per shard (from the manifest): a tar cut at a member boundary reads as a shorter, valid
        # tar, so only the expected count can tell that samples are missing
        self.shard_counts = dict(shard_counts or {})
        self.images, self.image_shape = bool(images), None
        self._resume = (-1, 0)  # (epoch, batches per rank already trained in it)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Called in the main process before each epoch's workers start; persistent workers instead count
        their own iterations (`_iters`), which gives the same epoch numbers."""
        self.epoch, self._iters = int(epoch), 0

    def skip_once(self, num_samples: int) -> None:
        """The next pass (a resumed epoch) continues each stream of this rank where it stopped; `num_samples`: the
        epoch's samples already trained, over all ranks. Before the pass starts (the workers copy this)."""
        if not self.resampled:  # workers hold unequal shares: which batch came from which stream is not fixed
            log.warning("an exact (resampled=false) shard pass cannot resume mid-epoch: it restarts the epoch")
            return
        self._resume = (self.epoch + self._iters, num_samples // (self.world_size * self.batch_size))

    def samples_per_worker(self, num_workers: int) -> int:
        """Per (rank, worker) and epoch: ceil(N / W / K), rounded up to whole batches, and so that the rank's K workers
        give whole optimizer steps (Lightning steps at an epoch's last batch even mid-accumulation, at a fraction of
        the global batch); resampled streams draw with replacement, so rounding up costs nothing."""
        workers = max(1, num_workers)
        batches = math.ceil(math.ceil(self.num_samples / self.world_size / workers) / self.batch_size)
        steps = self.accumulate // math.gcd(workers, self.accumulate)  # batches per worker: a multiple of this
        return math.ceil(batches / steps) * steps * self.batch_size

    def __len__(self) -> int:
        if not self.resampled:
            raise TypeError("an exact (not resampled) pass has no fixed per-rank length")
        return self.samples_per_worker(self.num_workers) * max(1, self.num_workers)

    def _shard_urls(self, epoch: int, worker: int, num_workers: int, rng: random.Random, state: dict):
        if self.resampled:
            limit = 2 * len(self.urls) + 10
            while True:
                state["shards_without_sample"] += 1
                if state["shards_without_sample"] > limit:
                    raise DataError(f"no readable sample in the last {limit} shards drawn from {self.urls[0]} ...: "
                                    f"the shards are unreadable")
                yield rng.choice(self.urls)
        order = list(self.urls)
        random.Random(mix_seed(self.seed, epoch)).shuffle(order)
        yield from order[self.rank::self.world_size][worker::num_workers]

    def _raw_samples(self, urls):
        """Samples of each shard in turn; an unreadable or short shard is one error (or one counted skip)."""
        for url in urls:
            count = 0
            try:
                for sample in iter_samples(url):
                    count += 1
                    yield sample
            except DataError as err:
                self.policy(err)
                continue
            except OSError as err:  # missing file, failed pipe: command, network
                self.policy(DataError(f"{url}: cannot read the shard ({type(err).__name__}: {err})"))
                continue
            expected = self.shard_counts.get(url)
            if expected is not None and count != expected:
                # a copy cut at a member boundary is a valid, shorter tar: only the count tells
                self.policy(DataError(f"{url}: ended after {count} of its {expected} samples (truncated shard); "
                                      f"re-run preprocessing for it"))

    def _decode(self, sample: dict):
        name = f"{sample.get('__url__')}: sample {sample.get('__key__')}"
        if "moments.npy" not in sample or "cls" not in sample:
            members = sorted(k for k in sample if not k.startswith("__"))
            raise DataError(f"{name}: lacks a .moments.npy or .cls member (has {members})")
        moments = check_moments(load_npy(sample["moments.npy"], name), self.shape, name)
        self.shape = self.shape or tuple(moments.shape)
        try:
            label = int(sample["cls"])
        except ValueError:
            raise DataError(f"{name}: .cls is {sample['cls'][:20]!r}, not an integer label") from None
        if label < 0 or (self.num_classes is not None and label >= self.num_classes):
            raise DataError(f"{name}: label {label} outside [0, {self.num_classes})")
        if not self.images:
            return torch.from_numpy(moments), label, None
        if IMAGE_MEMBER not in sample:
            raise DataError(no_images(name, f"the sample has no .{IMAGE_MEMBER} member"))
        image = decode_image(sample[IMAGE_MEMBER], name)
        self.image_shape = self.image_shape or tuple(image.shape)
        if tuple(image.shape) != self.image_shape:
            raise DataError(f"{name}: image of shape {tuple(image.shape)}, the others are {self.image_shape}: the "
                            f"shards mix resolutions; re-run preprocessing")
        return torch.from_numpy(moments), label, image

    def __iter__(self):
        worker, num_workers = worker_and_count()
        epoch = self.epoch + self._iters
        self._iters += 1
        # worker k yields the rank's batches k, k+K, ...; resumed after p of them, it continues batch p+k's stream,
        # which had yielded its batches below p
        done = self._resume[1] if self._resume[0] == epoch else 0
        stream = (worker + done) % num_workers
        skip = (done - stream + num_workers - 1) // num_workers * self.batch_size
        lazy = self.policy.on_error == "raise"  # a bad sample would have stopped the run: none among the skipped
        rng = random.Random(mix_seed(self.seed, epoch, self.rank, stream, 0))
        limit = self.samples_per_worker(num_workers) if self.resampled else None
        state = {"shards_without_sample": 0}
        n = 0  # samples of the stream so far, skipped ones included

        def entries():  # decoded before the shuffle buffer: errors surface at once, with their shard
            for sample in self._raw_samples(self._shard_urls(epoch, stream, num_workers, rng, state)):
                if lazy and n < skip:
                    state["shards_without_sample"] = 0
                    yield sample  # raw: decoded only if it is still in the buffer after the skip
                    continue
                try:
                    item = self._decode(sample)
                except DataError as err:
                    self.policy(err)
                    continue
                state["shards_without_sample"] = 0
                yield item

        for item in shuffled(entries(), self.shuffle_buffer, rng):
            if n < skip:
                n += 1
                continue
            moments, label, image = self._decode(item) if isinstance(item, dict) else item
            generator = sample_generator(self.seed, epoch, self.rank, stream, n)
            latent, flip = draw_latent(moments, self.scale, self.flip, generator)
            if image is None:
                yield latent, label
            else:
                yield (image.flip(-1) if flip else image), latent, label
            n += 1
            if limit is not None and n >= limit:
                return
