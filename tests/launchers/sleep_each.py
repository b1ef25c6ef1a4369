"""Callbacks for cluster tests, importable inside a job (the job runs from the repository root)."""
import time

from lightning.pytorch import Callback


class SlowUntilResumed(Callback):
    """Each step lasts at least `seconds` until the run has been resumed once: the first attempt reliably outlives
    a short SLURM time limit and the requeued one reliably finishes within it."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.ckpt_path is None:
            time.sleep(self.seconds)


class StampFirstStep(Callback):
    """Prints the wall-clock time at which the first step starts (submit-to-first-step measurements)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            print(f"[first step] {time.time():.3f}", flush=True)
