"""Extractors + metrics together: one pass of each needed extractor per batch feeds every metric's state."""
import torch
from hydra.utils import instantiate

from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.scoring.metrics.base import Metric
from dmf.eval.generation.precision import full_fp32


class Scorer:
    def __init__(self, metrics: dict[str, Metric], extractors: dict[str, FeatureExtractor]):
        self.metrics, self.extractors = metrics, extractors
        for name, m in metrics.items():
            ext = extractors.get(m.extractor)
            if ext is None:
                raise ValueError(f"metric {name!r} reads extractor {m.extractor!r}, which is not in eval.extractors "
                                 f"({sorted(extractors)})")
            if m.feature not in ext.dims:
                raise ValueError(f"metric {name!r} reads feature {m.feature!r}; {m.extractor} provides {sorted(ext.dims)}")
            m.bind(name, ext.dims[m.feature])

    def to(self, device) -> "Scorer":
        for ext in self.extractors.values():
            ext.to(device)
        return self

    def new_states(self, **kwargs) -> dict:
        return {name: m.new_state(**kwargs) for name, m in self.metrics.items()}

    @torch.no_grad()
    def update(self, states: dict, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor):
        with full_fp32(images.device.type):  # eval.precision is the network's; features stay fp32 (EDM2)
            feats = {name: ext(images) for name, ext in self.extractors.items()}
        for name, m in self.metrics.items():
            states[name].update(feats[m.extractor][m.feature], labels, indices)

    def states_to_dict(self, states: dict) -> dict:
        return {name: s.to_dict() for name, s in states.items()}

    def states_from_dict(self, d: dict) -> dict:
        return {name: self.metrics[name].state_from_dict(d[name]) for name in self.metrics}

    @staticmethod
    def merge(into: dict, other: dict) -> dict:
        for name in into:
            into[name].merge(other[name])
        return into

    def check_reference(self, reference: dict | None, source: str):
        for m in self.metrics.values():
            m.check_reference(reference, source)

    def compute(self, states: dict, reference: dict | None) -> dict[str, float]:
        out = {}
        for name, m in self.metrics.items():
            out.update(m.compute(states[name], reference))
        return out

    def reference(self, states: dict) -> dict:
        return {name: m.reference_entry(states[name]) for name, m in self.metrics.items() if m.needs_reference}

    @property
    def needs_reference(self) -> bool:
        return any(m.needs_reference for m in self.metrics.values())


def build_scorer(names, metric_defs, extractor_defs, only_reference: bool = False) -> Scorer:
    """Instantiate the metrics named in `names` (from eval.metric_defs) and only the extractors they read."""
    names = list(names or [])
    unknown = [n for n in names if n not in metric_defs]
    if unknown:
        raise ValueError(f"eval.metrics has unknown {unknown}; defined in eval.metric_defs: {sorted(metric_defs)}")
    metrics = {n: instantiate(metric_defs[n]) for n in names}
    if only_reference:
        metrics = {n: m for n, m in metrics.items() if m.needs_reference}
    needed = sorted({m.extractor for m in metrics.values()})
    missing = [e for e in needed if e not in extractor_defs]
    if missing:
        raise ValueError(f"metrics read extractors {missing}, not defined in eval.extractors ({sorted(extractor_defs)})")
    return Scorer(metrics, {e: instantiate(extractor_defs[e]) for e in needed})
