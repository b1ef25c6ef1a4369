"""Per-image randomness: image i's label, noise and sampler noise derive from (global seed, i) only, so a set
of N images is identical for any world size, batch size, chunking or resumption."""
import torch

from dmf.core.seeds import mix_seed


def index_seed(seed: int, index: int) -> int:
    """Image `index`'s seed: mixed, so neighbouring indices and seeds give unrelated streams."""
    return mix_seed(seed, index)


def index_inputs(seed: int, indices, shape: tuple[int, ...], num_classes: int, labels: str = "random",
                 step_noises: int = 0):
    """(noise (B, *shape), labels (B,), step_noise (step_noises, B, *shape) or None) for the given indices.

    labels: `random` (uniform over classes, the reference protocol) or `balanced` (index mod num_classes).
    step_noise feeds stochastic samplers (restart, gamma, SDE) their fresh noise per step.
    """
    if labels not in ("random", "balanced"):
        raise ValueError(f"eval.labels={labels!r} must be 'random' or 'balanced'")
    noise, ys, steps = [], [], []
    for i in (int(i) for i in indices):
        g = torch.Generator().manual_seed(index_seed(seed, i))
        y = torch.randint(num_classes, (1,), generator=g)  # always drawn: noise does not depend on `labels`
        ys.append(y if labels == "random" else torch.tensor([i % num_classes]))
        noise.append(torch.randn(shape, generator=g))
        if step_noises:
            steps.append(torch.randn((step_noises, *shape), generator=g))
    step_noise = torch.stack(steps, dim=1) if step_noises else None
    return torch.stack(noise), torch.cat(ys).long(), step_noise
