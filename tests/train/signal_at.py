"""A callback for tests: sends this process a signal at a given step, as SLURM does before a time limit."""
import os
import signal

from lightning.pytorch import Callback


class SignalAt(Callback):
    """Signals once `step` optimizer steps are done, after the micro-batch that did the last of them; with `mid_step`,
    after the next step's first micro-batch instead (mid-accumulation: a checkpoint has to wait for the step after)."""

    def __init__(self, step: int, signum: str = "SIGUSR2", mid_step: bool = False):
        self.step, self.signum, self.mid_step = step, signal.Signals[signum], mid_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if trainer.global_step == self.step and stepped != self.mid_step:
            os.kill(os.getpid(), self.signum)
