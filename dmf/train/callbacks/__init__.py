"""Lightning callbacks that evaluate during training (they use dmf.eval; the eval layer never imports them)."""
from dmf.train.callbacks.fid import FIDCallback
from dmf.train.callbacks.sample_grid import SampleGrid

__all__ = ["FIDCallback", "SampleGrid"]
