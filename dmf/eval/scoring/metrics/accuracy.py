"""Class accuracy of generated images under a classifier (argmax of its logits vs the conditioning label):
how well a class-conditional model follows its label (reported next to FD on the digits task)."""
import numpy as np

from dmf.eval.scoring.metrics.base import Metric, MetricState


class AccuracyState(MetricState):
    def __init__(self):
        self.correct, self.n = 0, 0

    def update(self, logits, labels, indices):
        self.correct += int((logits.argmax(1).cpu() == labels.cpu()).sum())
        self.n += len(labels)

    def merge(self, other):
        self.correct += other.correct
        self.n += other.n
        return self

    def to_dict(self):
        return {"correct": self.correct, "n": self.n}

    @classmethod
    def from_dict(cls, d):
        state = cls()
        state.correct, state.n = int(d["correct"]), int(d["n"])
        return state


class ClassAccuracy(Metric):
    def new_state(self, **kwargs):
        return AccuracyState()

    def state_from_dict(self, d):
        return AccuracyState.from_dict(d)

    def compute(self, state, reference):
        return {self.name: state.correct / max(state.n, 1) if state.n else float(np.nan)}
