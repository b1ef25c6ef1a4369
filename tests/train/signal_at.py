"""A callback for tests: sends this process a signal at a given step, as SLURM does before a time limit."""
import os
import signal

from lightning.pytorch import Callback


class SignalAt(Callback):
    def __init__(self, step: int, signum: str = "SIGUSR2"):
        self.step, self.signum = step, signal.Signals[signum]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
