"""Inception Score, streaming: image i goes to split i mod `splits` (a fixed, world-size-independent split),
and each split keeps n, sum p and sum_i sum_c p log p in float64, because
KL_split = mean_i sum_c p_ic log p_ic - sum_c pbar_c log pbar_c  (pbar = mean_i p_i),
IS_split = exp(KL_split); the score is the mean (and std) over splits, as in torch-fidelity / the original."""
import numpy as np
import torch

from dmf.eval.scoring.metrics.base import Metric, MetricState


class InceptionScoreState(MetricState):
    def __init__(self, splits: int, dim: int):
        self.n = np.zeros(splits, np.int64)
        self.sum_p = np.zeros((splits, dim), np.float64)
        self.sum_plogp = np.zeros(splits, np.float64)

    def update(self, logits, labels, indices):
        logits = logits.detach().double()
        logp = torch.log_softmax(logits, dim=1)
        p = logp.exp()
        plogp = (p * logp).sum(1)
        split = torch.as_tensor(indices, device=logits.device).long() % len(self.n)
        splits = len(self.n)
        sum_p = torch.zeros(splits, p.shape[1], dtype=torch.float64, device=p.device).index_add_(0, split, p)
        sum_plogp = torch.zeros(splits, dtype=torch.float64, device=p.device).index_add_(0, split, plogp)
        self.n += torch.bincount(split, minlength=splits).cpu().numpy()
        self.sum_p += sum_p.cpu().numpy()
        self.sum_plogp += sum_plogp.cpu().numpy()

    def merge(self, other):
        self.n += other.n
        self.sum_p += other.sum_p
        self.sum_plogp += other.sum_plogp
        return self

    def to_dict(self):
        return {"n": self.n, "sum_p": self.sum_p, "sum_plogp": self.sum_plogp}

    @classmethod
    def from_dict(cls, d):
        state = cls(*np.shape(d["sum_p"]))
        state.n, state.sum_p, state.sum_plogp = (np.array(d[k]) for k in ("n", "sum_p", "sum_plogp"))
        return state


def split_scores(state: InceptionScoreState) -> np.ndarray:
    if (state.n == 0).any():
        raise ValueError(f"Inception Score needs at least one image per split, have {state.n.tolist()}")
    pbar = state.sum_p / state.n[:, None]
    ent_bar = np.where(pbar > 0, pbar * np.log(np.where(pbar > 0, pbar, 1.0)), 0.0).sum(1)
    return np.exp(state.sum_plogp / state.n - ent_bar)


class InceptionScore(Metric):
    def __init__(self, extractor: str = "inception", feature: str = "logits", splits: int = 10):
        super().__init__(extractor, feature)
        self.splits = splits

    def new_state(self, **kwargs):
        return InceptionScoreState(self.splits, self.dim)

    def state_from_dict(self, d):
        return InceptionScoreState.from_dict(d)

    def compute(self, state, reference):
        scores = split_scores(state)
        return {self.name: float(scores.mean()), f"{self.name}_std": float(scores.std())}
