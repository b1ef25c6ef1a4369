"""Preemption and time limits without losing a step.

- RequeueOnSignal owns the pre-timeout signal (SIGUSR2, sent by SLURM `signal_delay_s` before the limit;
  Lightning's own SLURM auto-requeue is off, see dmf.train.slurm). The handler only raises a flag; at the next
  step boundary every rank agrees, `last.ckpt` is written, and submitit's handler (the one it had installed)
  requeues the job and exits (without submitit the process exits after the checkpoint). The requeued job reruns the same Hydra job in the same run dir and resumes from
  that checkpoint (resume=auto).
- RollingLast writes `last.ckpt` every `every_minutes` of wall time, for a death without a signal (SIGKILL, node
  failure): at most that much work is lost.
- ResumeState makes the resumed run draw what the uninterrupted one would have: each rank's RNG state and the
  position in the epoch travel in the checkpoint.

All three act at the start of a step, after the previous step's optimizer and EMA updates, so a checkpoint
holds whole steps only.
"""
import os
import signal
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from dmf.eval.dist import all_gather_object


def save_last(trainer, dirpath: str | os.PathLike, at_step_start: bool = True) -> Path:
    """At a step's start (or end): `<dirpath>/last.ckpt` written whole or not at all (a kill mid-write leaves the old
    one)."""
    last = Path(dirpath) / "last.ckpt"
    tmp = last.with_name("last.ckpt.partial")
    for callback in trainer.checkpoint_callbacks:  # ModelCheckpoint(save_last), now and after a resume, replaces
        if getattr(callback, "save_last", False):  # this file instead of versioning its own as last-v1.ckpt
            callback.last_model_path = str(last)
            callback._last_checkpoint_saved = str(last)  # and does not write it again after the loop (on_train_end)
    # At a step's start Lightning has already counted the coming batch as ready. Saved so, the restored counters
    # disagree: Lightning misreads the restart and counts micro-batches into steps from another phase (a step of one
    # micro-batch after the next resume). Without it the checkpoint is the state between two steps exactly.
    progress = trainer.fit_loop.epoch_loop.batch_progress
    shift = int(at_step_start)
    progress.total.ready -= shift
    progress.current.ready -= shift
    try:
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: every rank calls it, rank 0 writes; resumable
    finally:
        progress.total.ready += shift
        progress.current.ready += shift
    if trainer.is_global_zero:
        os.replace(tmp, last)
    trainer.strategy.barrier("dmf_save_last")
    return last


def step_starts(trainer, batch_idx: int) -> bool:
    """This batch is a step's first micro-batch (under gradient accumulation the others carry a partial gradient that
    no checkpoint holds). Lightning's own test: batch_idx restarts with every epoch, and so does accumulation."""
    return batch_idx % trainer.accumulate_grad_batches == 0


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
        if not step_starts(trainer, batch_idx):
            return  # mid-accumulation: the flag waits for the next step
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
        if self.every_s is None or trainer.global_step == 0 or not step_starts(trainer, batch_idx):
            return
        due = time.monotonic() - self._last >= self.every_s
        if trainer.world_size > 1:  # clocks differ per rank: rank 0 decides
            due = trainer.strategy.broadcast(due, src=0)
        if due:
            save_last(trainer, self.dirpath)
            self._last = time.monotonic()


class FinalLast(Callback):
    """`last.ckpt` at the end of the step that reaches trainer.max_steps, inside the loop as Lightning's own step-end
    checkpoints are. (Saved after fit() returns, a run stopped mid-epoch would record that epoch as completed: the
    resumed run would start the next epoch's data order early.)"""

    def __init__(self, dirpath: str):
        self.dirpath, self.saved = dirpath, False
        self.start_step = None  # the step training started at; None: fit had nothing to train (a finished run)

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.saved and not trainer.fast_dev_run and 0 < trainer.max_steps <= trainer.global_step:
            # (ModelCheckpoint's `last` at this very step, called after this callback, would write it a second time)
            if not any(getattr(c, "save_last", False) and c._every_n_train_steps
                       and trainer.global_step % c._every_n_train_steps == 0 for c in trainer.checkpoint_callbacks):
                save_last(trainer, self.dirpath, at_step_start=False)
            self.saved = True


class ResumeState(Callback):
    """Puts each rank's RNG and the position inside the epoch into every checkpoint and restores them on resume.

    The position is counted in samples of the epoch's order over all ranks; a datamodule with `resume_at`
    (dmf.data.resume_position) builds its loader there, and every rank continues its own stream. Saving is
    collective (every rank's RNG is gathered), as Lightning's checkpointing already is."""

    def __init__(self):
        self._pending = None

    def state_dict(self):
        trainer = self._trainer
        rng = {"torch_rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        # batches of this epoch whose optimizer step is done, on each rank, whether saved at a step's start or end;
        # none once the epoch is through (after fit() the epoch counter has moved on but this count has not)
        processed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if processed >= trainer.num_training_batches:
            processed = 0
        batch_size = getattr(trainer.train_dataloader, "batch_size", None) or 0
        return {
            "rng": all_gather_object(rng) if trainer.world_size > 1 else [rng],
            "epoch": trainer.current_epoch,
            "samples_done": processed * batch_size * trainer.world_size,
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict):
        self._pending = state_dict
        # the datamodule builds its loader at this position (dmf.data.resume_position): Lightning creates the loader's
        # iterator before on_train_start, and with workers that already draws the order
        datamodule = getattr(getattr(self, "_trainer", None), "datamodule", None)
        if "samples_done" in state_dict and hasattr(datamodule, "resume_at"):
            datamodule.resume_at(state_dict["epoch"], state_dict["samples_done"])

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def on_train_start(self, trainer, pl_module):  # (Lightning skips on_train_epoch_start when resuming mid-epoch)
        state, self._pending = self._pending, None
        if not state or "rng" not in state or state["epoch"] != trainer.current_epoch:
            return  # (an end-of-epoch checkpoint starts the next epoch from its beginning anyway)
        if state["world_size"] == trainer.world_size:  # another world size: the per-rank streams do not carry over
            rng = state["rng"][trainer.global_rank]
            torch.set_rng_state(rng["torch_rng"])
            if rng["cuda_rng"]:
                torch.cuda.set_rng_state_all(rng["cuda_rng"])
