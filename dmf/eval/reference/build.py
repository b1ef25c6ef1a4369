"""Building reference statistics from a dataset of real images (mode=ref_stats, or eval.ref_stats=build)."""
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from dmf.eval import dist as edist
from dmf.eval.generation.images import to_uint8
from dmf.eval.progress import Progress, say
from dmf.eval.scoring.scorer import Scorer


class _Indexed(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        x, y = self.ds[i]
        return x, int(y), i


def as_images(x: torch.Tensor, space: str, vae=None, quantize: str = "floor") -> torch.Tensor:
    """A batch from a source -> uint8 RGB: uint8 passes, [-1, 1] floats are quantised, latents decoded first."""
    if space == "latent":
        if vae is None:
            raise ValueError("eval.ref_space=latent needs data.vae to decode")
        return to_uint8(vae.decode(x.float()), quantize)
    if space != "image":
        raise ValueError(f"eval.ref_space={space!r} must be 'image' or 'latent'")
    if x.dtype == torch.uint8:
        return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x
    return to_uint8(x, quantize)


@torch.no_grad()
def reference_states(dataset, scorer: Scorer, device, info: edist.DistInfo, batch_size: int = 64,
                     num_workers: int = 0, space: str = "image", vae=None, quantize: str = "floor",
                     seed: int = 0, log=say) -> dict:
    """Metric states over every item of `dataset`, sharded over processes (map-style) and merged on all ranks.

    Precision/recall keeps a fixed random subset (its max_samples) of the real features, drawn from `seed`."""
    if isinstance(dataset, IterableDataset):
        if info.world_size > 1:
            raise ValueError("an iterable (webdataset) reference source runs in one process; launch without torchrun")
        states = scorer.new_states()
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        offset, progress = 0, Progress("reference statistics", None, emit=log)
        for x, y in loader:
            idx = torch.arange(offset, offset + len(y))
            scorer.update(states, as_images(x.to(device), space, vae, quantize), y.to(device), idx)
            offset += len(y)
            progress.update(offset)
        if info.is_main:
            log(f"reference statistics over {offset} images")
        return states
    n = len(dataset)
    keep = None
    pr = [m for m in scorer.metrics.values() if getattr(m, "max_samples", None)]
    if pr and pr[0].max_samples < n:  # a random subset, not the first (class-sorted) items
        keep = torch.zeros(n, dtype=torch.bool)
        keep[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: pr[0].max_samples]] = True
    states = scorer.new_states(keep=keep)
    shard = Subset(_Indexed(dataset), range(info.rank, n, info.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers)
    progress, seen = Progress("reference statistics", n, scale=info.world_size, emit=log), 0
    for x, y, idx in loader:
        scorer.update(states, as_images(x.to(device), space, vae, quantize), y.to(device), idx)
        seen += len(idx)
        progress.update(seen)
    gathered = edist.all_gather_object(scorer.states_to_dict(states))
    merged = scorer.states_from_dict(gathered[0])
    for d in gathered[1:]:
        scorer.merge(merged, scorer.states_from_dict(d))
    if info.is_main:
        log(f"reference statistics over {n} images")
    return merged
