"""Generation at scale: N images, image i from (seed, i) only, split over processes in fixed chunks, decoded,
quantised to uint8 and fed to the feature extractors on the fly (no PNG round trip); optional writers export
PNG/npz. Resumable when given a work directory (see dmf.eval.generation.partial)."""
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dmf.eval import dist as edist
from dmf.eval.generation.images import to_uint8
from dmf.eval.generation.partial import PartialRun
from dmf.eval.generation.precision import tf32 as tf32_scope
from dmf.eval.generation.seeding import index_inputs
from dmf.eval.progress import Progress, say


@dataclass
class Plan:
    num_samples: int
    seed: int
    shape: tuple  # (C, H, W) in model space
    num_classes: int
    batch_size: int = 64
    chunk_size: int = 1000
    labels: str = "random"
    quantize: str = "floor"
    feature_batch_size: int = 64  # images per feature pass, counted from each chunk's start

    def __post_init__(self):
        for key in ("num_samples", "batch_size", "chunk_size", "feature_batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"eval.{key}={getattr(self, key)} must be >= 1")
        self.shape = tuple(int(s) for s in self.shape)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_samples / self.chunk_size)

    def chunk(self, c: int) -> torch.Tensor:
        return torch.arange(c * self.chunk_size, min((c + 1) * self.chunk_size, self.num_samples))


# eval.decode_precision: the VAE decode in fp32 (the reference pipeline) or under bf16 autocast (convolutions in
# bf16, normalisations in fp32; several times faster on GPUs; the trade is measured in docs/eval.md)
DECODE_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def decode(vae, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Latents -> float32 images; `dtype` (eval.decode_precision) runs the decoder under that autocast."""
    with torch.autocast(z.device.type, dtype=dtype, enabled=dtype is not None):
        return vae.decode(z.float()).float()


class NonFiniteOutput(RuntimeError):
    """The network produced NaN/inf: scoring or exporting it would report numbers of broken images."""


class Renderer:
    """indices -> (uint8 RGB images, labels) on `device`: noise and labels from (seed, i), sampler, decode.
    `tf32` applies to the network only; decoding runs in fp32 unless `decode_precision` says otherwise. `source`
    (e.g. the checkpoint) names the network in errors."""

    def __init__(self, net, sampler, vae, device, autocast_dtype: torch.dtype | None = None, tf32: bool = False,
                 source: str = "the network", decode_precision: str = "fp32"):
        if decode_precision not in DECODE_PRECISIONS:
            raise ValueError(f"eval.decode_precision={decode_precision!r} must be one of {list(DECODE_PRECISIONS)}")
        self.net, self.sampler, self.vae, self.device = net, sampler, vae, torch.device(device)
        self.autocast_dtype, self.tf32, self.source = autocast_dtype, tf32, source
        self.decode_dtype = DECODE_PRECISIONS[decode_precision]

    @torch.no_grad()
    def __call__(self, plan: Plan, indices: torch.Tensor):
        stochastic = getattr(self.sampler, "stochastic", False)
        noise, y, step_noise = index_inputs(plan.seed, indices, plan.shape, plan.num_classes, plan.labels,
                                            step_noises=self.sampler.steps if stochastic else 0)
        noise, y = noise.to(self.device), y.to(self.device)
        kwargs = {"step_noise": step_noise.to(self.device)} if stochastic else {}
        with tf32_scope(self.tf32), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                   enabled=self.autocast_dtype is not None):
            x0 = self.sampler(self.net, noise, y, **kwargs)
        bad = ~torch.isfinite(x0.flatten(1)).all(dim=1)
        if bool(bad.any()):
            first = int(indices[bad.cpu()][0])
            raise NonFiniteOutput(f"{self.source} produced non-finite values (NaN/inf) for sample index {first} "
                                  f"({int(bad.sum())} of {len(indices)} in this batch) with {type(self.sampler).__name__} "
                                  f"{getattr(self.sampler, 'steps', '')} steps; the weights are probably broken (a "
                                  f"diverged training run). Nothing was scored or exported for this batch.")
        with tf32_scope(False):
            images = decode(self.vae, x0, self.decode_dtype)
        return to_uint8(images, plan.quantize), y


class AlignedFeed:
    """Feeds the scorer in fixed groups of consecutive indices counted from the chunk's start, whatever the
    render batch. float32 features depend on the batch they are computed in (the matmul kernels block by batch
    size and CPU), so fixed groups make the statistics of the same images independent of eval.batch_size and
    of the number of processes (chunks go to processes whole)."""

    def __init__(self, scorer, states: dict, size: int):
        self.scorer, self.states, self.size, self.parts = scorer, states, size, []

    def add(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor):
        self.parts.append((images, labels, indices.to(images.device)))
        while sum(len(p[2]) for p in self.parts) >= self.size:
            self._feed(self.size)

    def flush(self):
        if self.parts:
            self._feed(sum(len(p[2]) for p in self.parts))

    def _feed(self, n: int):
        images, labels, indices = (torch.cat(t) for t in zip(*self.parts))
        self.scorer.update(self.states, images[:n], labels[:n], indices[:n])
        self.parts = [(images[n:], labels[n:], indices[n:])] if n < len(indices) else []


@dataclass
class Outcome:
    states: dict | None  # merged metric states: on the main rank (every rank in memory mode), else None
    images_per_s: float  # over all processes, this attempt
    seconds: float


def run(plan: Plan, render, scorer=None, info: edist.DistInfo | None = None, work_dir: str | Path | None = None,
        fingerprint: dict | None = None, writers=(), checkpoint_every_s: float = 300.0, label: str = "",
        log=say) -> Outcome:
    """Generate plan.num_samples images and merge the metric states. With work_dir, progress is saved there and
    the run resumes; without (the training callbacks), states are gathered in memory onto every rank."""
    info = info or edist.current()
    scorer_new = scorer.new_states if scorer is not None else dict
    states = scorer_new()
    partial = PartialRun(Path(work_dir) / "partial", fingerprint or {}) if work_dir is not None else None
    done, attempt = set(), 0
    if partial is not None:
        partial.check()  # every rank reads the same files before anyone writes
        done, attempt = partial.done_chunks(), partial.next_attempt()
        edist.barrier()
        if info.is_main:
            partial.write_spec()
            if done:
                log(f"{label}: resuming, {len(done)} of {plan.num_chunks} chunks already done")
    todo = [c for c in range(plan.num_chunks) if c not in done]
    mine = todo[info.rank::info.world_size]
    my_done, n_images = [], 0
    todo_images = sum(len(plan.chunk(c)) for c in todo)
    progress = Progress(label, todo_images, scale=info.world_size, emit=log)
    t0 = last_save = time.time()
    for c in mine:
        feed = AlignedFeed(scorer, states, plan.feature_batch_size) if scorer is not None else None
        for idx in plan.chunk(c).split(plan.batch_size):
            images, y = render(plan, idx)
            if feed is not None:
                feed.add(images, y, idx)
            if writers:
                cpu_images, cpu_y = images.cpu(), y.cpu()
                for w in writers:
                    w.write(idx, cpu_images, cpu_y)
            n_images += len(idx)
            progress.update(n_images)
        if feed is not None:
            feed.flush()
        for w in writers:
            w.end_chunk(c)
        my_done.append(c)
        now = time.time()
        if partial is not None and now - last_save > checkpoint_every_s:
            partial.save(attempt, info.rank, my_done, scorer.states_to_dict(states) if scorer else {})
            last_save = now
    elapsed = time.time() - t0
    rate = sum(edist.all_gather_object(n_images / elapsed if elapsed > 0 else 0.0))
    if partial is None:  # in memory: every rank gets everything
        gathered = edist.all_gather_object(scorer.states_to_dict(states) if scorer else {})
        merged = scorer_new()
        for d in gathered if scorer is not None else ():
            scorer.merge(merged, scorer.states_from_dict(d))
        return Outcome(merged, rate, elapsed)
    if my_done:
        partial.save(attempt, info.rank, my_done, scorer.states_to_dict(states) if scorer else {})
    edist.barrier()
    if not info.is_main:
        return Outcome(None, rate, elapsed)
    _, saved = partial.merged(plan.num_chunks)
    for w in writers:
        w.finalize(plan)
    merged = scorer_new()
    for d in saved if scorer is not None else ():
        scorer.merge(merged, scorer.states_from_dict(d))
    log(f"{label}: {plan.num_samples} images done, {rate:.1f} img/s over {info.world_size} process(es) this attempt")
    return Outcome(merged, rate, elapsed)
