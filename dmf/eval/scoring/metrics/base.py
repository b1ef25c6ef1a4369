"""A metric reads one feature of one extractor and keeps a mergeable state (so that processes, resumed runs and
batches combine exactly); compute() turns a state (and reference statistics) into numbers."""


class MetricState:
    def update(self, feats, labels, indices):
        raise NotImplementedError

    def merge(self, other: "MetricState") -> "MetricState":
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict) -> "MetricState":
        raise NotImplementedError


class Metric:
    needs_reference = False

    def __init__(self, extractor: str, feature: str):
        self.extractor, self.feature = extractor, feature
        self.name = None  # the key in eval.metrics / the reference file, set by build_metrics
        self.dim = None

    def bind(self, name: str, dim: int) -> "Metric":
        self.name, self.dim = name, dim
        return self

    def new_state(self, **kwargs) -> MetricState:
        raise NotImplementedError

    def state_from_dict(self, d: dict) -> MetricState:
        raise NotImplementedError

    def compute(self, state: MetricState, reference: dict | None) -> dict[str, float]:
        raise NotImplementedError

    def reference_entry(self, state: MetricState) -> dict:
        """What the reference-statistics file stores for this metric (only if needs_reference)."""
        raise NotImplementedError

    def check_reference(self, reference: dict | None, source: str):
        """Raise one clear error if `reference` lacks what compute() will need (called before any work)."""
        if not self.needs_reference:
            return
        have = sorted(reference) if reference else []
        if not reference or self.name not in reference:
            raise ValueError(
                f"metric {self.name!r} needs reference statistics, but {source or 'eval.ref_stats (unset)'} has "
                f"{have or 'none'}. Fix: set eval.ref_stats=<.pkl/.npz path or hf:// URI> with a {self.name!r} "
                f"entry (build one with mode=ref_stats), or drop {self.name} from eval.metrics.")
