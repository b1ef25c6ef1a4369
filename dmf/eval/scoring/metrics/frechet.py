"""Fréchet distance in a feature space (FID in Inception pool features, FD-DINOv2 in DINOv2 features), from
float64 running sums; the reference entry is {mu, sigma} as in EDM2's pickles."""
import numpy as np
import torch

from dmf.eval.scoring.gaussian import FeatureStats, frechet_distance
from dmf.eval.scoring.metrics.base import Metric, MetricState


class FrechetState(MetricState):
    """FeatureStats, fed through float64 sums kept on the features' device: on a GPU the x^T x of 2,048-d
    features costs microseconds there instead of milliseconds of CPU BLAS per batch. Flushed into the
    FeatureStats before anything reads it."""

    def __init__(self, dim: int):
        self.stats = FeatureStats(dim)
        self._n, self._sum, self._outer = 0, None, None

    def update(self, feats, labels, indices):
        f = torch.as_tensor(feats).detach().reshape(len(feats), -1).double()
        if f.shape[1] != self.stats.dim:
            raise ValueError(f"features have {f.shape[1]} dims, statistics expect {self.stats.dim}")
        if self._sum is None or self._sum.device != f.device:
            self._flush()
            self._sum = torch.zeros(self.stats.dim, dtype=torch.float64, device=f.device)
            self._outer = torch.zeros(self.stats.dim, self.stats.dim, dtype=torch.float64, device=f.device)
        self._n += len(f)
        self._sum += f.sum(0)
        self._outer += f.T @ f

    def _flush(self) -> FeatureStats:
        if self._n:
            self.stats.n += self._n
            self.stats.sum += self._sum.cpu().numpy()
            self.stats.sum_outer += self._outer.cpu().numpy()
            self._n = 0
            self._sum.zero_()
            self._outer.zero_()
        return self.stats

    def merge(self, other):
        self._flush().merge(other._flush())
        return self

    def to_dict(self):
        s = self._flush()
        return {"n": s.n, "sum": s.sum, "sum_outer": s.sum_outer}

    @classmethod
    def from_dict(cls, d):
        state = cls(len(d["sum"]))
        state.stats.n = int(d["n"])
        state.stats.sum = np.asarray(d["sum"], np.float64).copy()
        state.stats.sum_outer = np.asarray(d["sum_outer"], np.float64).copy()
        return state


class Frechet(Metric):
    needs_reference = True

    def new_state(self, **kwargs):
        return FrechetState(self.dim)

    def state_from_dict(self, d):
        return FrechetState.from_dict(d)

    def compute(self, state, reference):
        ref = reference[self.name]
        stats = state._flush()
        return {self.name: frechet_distance(stats.mu, stats.sigma, ref["mu"], ref["sigma"])}

    def reference_entry(self, state):
        stats = state._flush()
        return {"mu": stats.mu, "sigma": stats.sigma}

    def check_reference(self, reference, source):
        super().check_reference(reference, source)
        ref = reference[self.name]
        if "mu" not in ref or "sigma" not in ref:
            raise ValueError(f"{source}: entry {self.name!r} needs 'mu' and 'sigma', has {sorted(ref)}")
        if np.shape(ref["mu"]) != (self.dim,) or np.shape(ref["sigma"]) != (self.dim, self.dim):
            raise ValueError(
                f"{source}: {self.name!r} statistics are {np.shape(ref['mu'])}/{np.shape(ref['sigma'])}, but the "
                f"{self.extractor} {self.feature!r} features are {self.dim}-d: the reference was made with another "
                f"feature network; rebuild it with mode=ref_stats or use the matching eval.extractors")
