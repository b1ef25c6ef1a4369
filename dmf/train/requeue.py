"""Preemption and time limits without losing a step.

- RequeueOnSignal owns the pre-timeout signal (SIGUSR2, sent by SLURM `signal_delay_s` before the limit;
  Lightning's own SLURM auto-requeue is off, see dmf.train.slurm). The handler only raises a flag; at the next
  step boundary every rank agrees, `last.ckpt` is written, and submitit's handler (the one it had installed)
  requeues the job and exits (without submitit the process exits after the checkpoint). The requeued job reruns the same Hydra job in the same run dir and resumes from
  that checkpoint (resume=auto).
- RollingLast writes `last.ckpt` every `every_minutes` of wall time, for a death without a signal (SIGKILL, node
  failure): at most that much work is lost.
- ResumeState makes the resumed run draw what the uninterrupted one would have: the RNG state and the position
  in the epoch travel in the checkpoint.

All three act at the start of a step, after the previous step's optimizer and EMA updates, so a checkpoint
holds whole steps only.
"""
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback


def save_last(trainer, dirpath: str | os.PathLike) -> Path:
    """At a step's start: `<dirpath>/last.ckpt` written whole or not at all (a kill mid-write leaves the old one)."""
    last = Path(dirpath) / "last.ckpt"
    tmp = last.with_name("last.ckpt.partial")
    for callback in trainer.checkpoint_callbacks:  # ModelCheckpoint(save_last), now and after a resume, replaces
        if getattr(callback, "save_last", False):  # this file instead of versioning its own as last-v1.ckpt
            callback.last_model_path = str(last)
    # Lightning expects checkpoints from a step's end and adds 1 to its logging step counter on resume; at a
    # step's start that counter is already up to date
    loop = trainer.fit_loop.epoch_loop
    loop._batches_that_stepped -= 1
    try:
        trainer.save_checkpoint(tmp)  # collective: every rank calls it, rank 0 writes
    finally:
        loop._batches_that_stepped += 1
    if trainer.is_global_zero:
        os.replace(tmp, last)
    trainer.strategy.barrier("dmf_save_last")
    return last


class RequeueOnSignal(Callback):
    def __init__(self, dirpath: str, signum: str = "SIGUSR2"):
        self.dirpath, self.signum = dirpath, signal.Signals[signum]
        self._previous, self._caught = None, False

    def on_train_start(self, trainer, pl_module):
        self._previous = signal.signal(self.signum, self._flag)

    def on_train_end(self, trainer, pl_module):
        if self._previous is not None:
            signal.signal(self.signum, self._previous)

    def _flag(self, signum, frame):
        self._caught = True  # never checkpoint inside a step: the handler may run between any two bytecodes

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        caught = self._caught
        if trainer.world_size > 1:  # SLURM signals every task, not necessarily during the same step
            caught = trainer.strategy.reduce_boolean_decision(caught, all=False)
        if not caught:
            return
        path = save_last(trainer, self.dirpath)
        print(f"[dmf] {self.signum.name} at step {trainer.global_step}: wrote {path}", flush=True)
        if callable(self._previous):
            # submitit's handler: requeue (counting max_num_timeout) and exit without a result on rank 0
            self._previous(self.signum, None)
        # no submitit (a plain sbatch), or a rank > 0 that submitit leaves running: exit here, mid-epoch. (Asking
        # Lightning to stop would close the epoch early and shift the resumed run's data order.)
        raise SystemExit(f"[dmf] stopped on {self.signum.name}; resume from {path}")


class RollingLast(Callback):
    """`last.ckpt` every `every_minutes` of training wall time (null: off); the step cadence stays with
    ModelCheckpoint."""

    def __init__(self, dirpath: str, every_minutes: float | None = None):
        self.dirpath, self.every_s = dirpath, every_minutes * 60 if every_minutes else None
        self._last = None

    def on_train_start(self, trainer, pl_module):
        self._last = time.monotonic()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.every_s is None or trainer.global_step == 0:
            return
        due = time.monotonic() - self._last >= self.every_s
        if trainer.world_size > 1:  # clocks differ per rank: rank 0 decides
            due = trainer.strategy.broadcast(due, src=0)
        if due:
            save_last(trainer, self.dirpath)
            self._last = time.monotonic()


class ResumeState(Callback):
    """Puts the RNG and the position inside the epoch into every checkpoint and restores them on resume."""

    def __init__(self):
        self._pending = None

    def state_dict(self):
        trainer = self._trainer
        return {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": trainer.current_epoch,
            # batches of this epoch whose optimizer step is done, whether saved at a step's start or end
            "processed": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict):
        self._pending = state_dict

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module):  # (Lightning skips on_train_epoch_start when resuming mid-epoch)
        state, self._pending = self._pending, None
        if not state or state["epoch"] != trainer.current_epoch or trainer.world_size != 1 or state["world_size"] != 1:
            return  # several ranks: each has its own stream and shard (a per-rank restore is not kept here)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if state["processed"] and hasattr(sampler, "skip_once"):
            sampler.skip_once(state["processed"] * loader.batch_size)
