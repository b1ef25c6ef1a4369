"""The callbacks every training run gets, whatever the `callbacks` group holds: nothing about a run may go silent."""
from omegaconf import DictConfig

from dmf.train.log_overlap import SupersededLogRows
from dmf.train.nonfinite import nonfinite_guard
from dmf.train.resume_guard import RunRecord


def run_guards(cfg: DictConfig) -> list:
    return [nonfinite_guard(cfg), RunRecord(cfg), SupersededLogRows()]
