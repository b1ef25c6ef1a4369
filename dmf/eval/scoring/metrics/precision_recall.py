"""Improved precision and recall (Kynkäänniemi et al. 2019), k = 3: a sample is "covered" by a set if it lies
within the k-th-nearest-neighbour radius (self excluded) of at least one member of that set.
precision = fraction of generated samples covered by the real set; recall = reals covered by the generated set.
Needs the features themselves (not only moments): the reference entry stores a fixed subset of real features."""
import numpy as np
import torch

from dmf.eval.scoring.metrics.base import Metric, MetricState


def knn_radii(x: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    if len(x) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, have {len(x)}")
    return torch.cat([torch.cdist(c, x).kthvalue(k + 1, dim=1).values for c in x.split(batch)])


def covered(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([(torch.cdist(c, ref) <= radii[None]).any(dim=1) for c in query.split(batch)])


@torch.no_grad()
def precision_recall(real, fake, k: int = 3, batch: int = 4096, device=None) -> tuple[float, float]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    real = torch.as_tensor(np.asarray(real), dtype=torch.float32, device=device)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float32, device=device)
    precision = covered(fake, real, knn_radii(real, k, batch), batch).float().mean().item()
    recall = covered(real, fake, knn_radii(fake, k, batch), batch).float().mean().item()
    return precision, recall


class PRState(MetricState):
    """Features of the images whose index is < max_samples (or flagged in `keep`), kept with their indices so
    that the final set and its order are independent of how the work was split."""

    def __init__(self, max_samples: int | None = None, keep: torch.Tensor | None = None):
        self.max_samples, self.keep = max_samples, keep
        self.indices, self.features = [], []

    def update(self, feats, labels, indices):
        idx = torch.as_tensor(indices).long().cpu()
        mask = torch.ones(len(idx), dtype=torch.bool)
        if self.max_samples is not None:
            mask &= idx < self.max_samples
        if self.keep is not None:
            mask &= self.keep[idx.clamp(max=len(self.keep) - 1)] & (idx < len(self.keep))
        if mask.any():
            self.indices.append(idx[mask].numpy())
            self.features.append(feats.detach().float().cpu()[mask].numpy())

    def merge(self, other):
        self.indices += other.indices
        self.features += other.features
        return self

    def arrays(self):
        if not self.indices:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        idx, feats = np.concatenate(self.indices), np.concatenate(self.features)
        order = np.argsort(idx, kind="stable")
        if len(np.unique(idx)) != len(idx):
            raise RuntimeError("precision/recall state holds an index twice: partial results overlap")
        return idx[order], feats[order]

    def to_dict(self):
        idx, feats = self.arrays()
        return {"indices": idx, "features": feats, "max_samples": self.max_samples}

    @classmethod
    def from_dict(cls, d):
        state = cls(d.get("max_samples"))
        if len(d["indices"]):
            state.indices, state.features = [np.asarray(d["indices"])], [np.asarray(d["features"])]
        return state


class PrecisionRecall(Metric):
    needs_reference = True

    def __init__(self, extractor: str = "inception", feature: str = "pool", k: int = 3,
                 max_samples: int | None = 50000, batch: int = 4096):
        super().__init__(extractor, feature)
        self.k, self.max_samples, self.batch = k, max_samples, batch

    def new_state(self, keep=None, **kwargs):
        return PRState(self.max_samples if keep is None else None, keep)

    def state_from_dict(self, d):
        return PRState.from_dict(d)

    def compute(self, state, reference):
        _, fake = state.arrays()
        precision, recall = precision_recall(reference[self.name]["features"], fake, self.k, self.batch)
        return {"precision": precision, "recall": recall}

    def reference_entry(self, state):
        return {"features": state.arrays()[1].astype(np.float32)}

    def check_reference(self, reference, source):
        super().check_reference(reference, source)
        feats = reference[self.name].get("features")
        if feats is None or np.ndim(feats) != 2 or np.shape(feats)[1] != self.dim:
            raise ValueError(f"{source}: entry {self.name!r} needs 'features' of shape (N, {self.dim}), got "
                             f"{None if feats is None else np.shape(feats)}; rebuild it with mode=ref_stats")
