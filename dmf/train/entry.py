"""mode=train: build everything from the composed config and fit."""
import logging
import shutil
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.build import build_network, build_objective
from dmf.config.launch import runs_here
from dmf.core.errors import MissingFileError, ResultExistsError
from dmf.core.files import atomic_path
from dmf.core.ranks import torchrun_layout
from dmf.core.run_history import mark_last_attempt
from dmf.train.batch import resolve_devices
from dmf.train.guards import run_guards
from dmf.train.loggers import log_run_config
from dmf.train.module import TrainModule
from dmf.train.nonfinite import TRAINER_KEYS as NONFINITE_KEYS
from dmf.train.preflight import check_data, launch_checks, preflight
from dmf.train.requeue import FinalLast
from dmf.train.resume_guard import check_resume, trained_in
from dmf.train.slurm import requeued, slurm_trainer_kwargs
from dmf.train.snapshots import latest_resumable, set_aside_later
from dmf.train.strategy import check_attention_device, check_jvp_attention, check_strategy


def trainer_kwargs(cfg: DictConfig, accumulate: int) -> dict:
    kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in NONFINITE_KEYS:  # read by the non-finite guard, not lightning.Trainer arguments
        kw.pop(key, None)
    if kw.get("precision") == "auto":
        kw["precision"] = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    kw["accumulate_grad_batches"] = accumulate
    if torchrun_layout():  # the processes torchrun started, not Lightning's own reading of `auto`
        kw["devices"] = resolve_devices(kw["devices"], kw["accelerator"])
    every, steps = kw.get("log_every_n_steps"), kw.get("max_steps", -1)
    if isinstance(every, int) and 0 < steps < every:  # a run shorter than the interval would log nothing
        kw["log_every_n_steps"] = steps
    return slurm_trainer_kwargs(kw)


def resume_path(cfg: DictConfig) -> str | None:
    """`resume`: auto = the run dir's last.ckpt if it exists, else its latest resumable snapshot; otherwise a path or
    null. A new start (null) is refused where the run dir already holds a run's checkpoints: the new run would replace
    or mix with them (Lightning writes step_N-v1.ckpt beside step_N.ckpt), and so is a path outside the run's
    checkpoints/ (another run's weights) unless it records this run dir (a copy kept elsewhere); one of this run's
    rolls the run back. A requeued SLURM job started with
    resume=<path> continues from its own last.ckpt."""
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    last = checkpoints / "last.ckpt"
    held = sorted(checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    if cfg.resume == "auto":
        return str(last) if last.exists() else latest_snapshot(checkpoints)
    if not cfg.resume:
        if held:
            raise ResultExistsError(f"{checkpoints} holds the run of this run dir ({_names(held)}), which a new start "
                                    f"(resume=null) would replace or mix with. Fix: resume=auto (the default) continues "
                                    f"it; to start anew, choose another run dir (run_dir=<folder>; ckpt=<file> "
                                    f"initialises the weights from any checkpoint)")
        return None
    own = (last if last.exists() else latest_resumable(checkpoints)[0]) if held and requeued() else None
    if own is not None and Path(cfg.resume).resolve() != own.resolve():
        # the requeued job reruns its original command: resume=<where it started> would throw away its progress
        print(f"[dmf] requeued SLURM job: continuing from {own}, this run's progress, not resume={cfg.resume}, "
              f"where it started", flush=True)
        return str(own)
    if not Path(cfg.resume).exists():
        raise MissingFileError(f"resume={cfg.resume} does not exist (use resume=auto or a .ckpt path)")
    given = Path(cfg.resume).resolve()
    if held and given.parent != checkpoints.resolve() and not trained_in(given, cfg.run_dir):
        raise ResultExistsError(f"resume={cfg.resume} is not a checkpoint of this run, and {checkpoints} holds the run "
                                f"of this run dir ({_names(held)}), which resuming from it would replace or mix with. "
                                f"Fix: continue it in a run dir of its own (run_dir=<new folder> resume={cfg.resume}), "
                                f"or resume=auto to continue this run")
    if last.exists() and given != last.resolve() and rank_zero_only.rank == 0:
        print(f"[dmf] rolling back to resume={cfg.resume}: this run's later checkpoints (last.ckpt, further on) "
              f"will be set aside when training starts", flush=True)
    return cfg.resume


def latest_snapshot(checkpoints: Path) -> str | None:
    """resume=auto without last.ckpt (a stop before the first was written, or a deleted one): the latest periodic
    checkpoint that resumes the run, said; a new start only where no checkpoint of an earlier run is left to mix with."""
    latest, others = latest_resumable(checkpoints)
    if latest is not None:
        if rank_zero_only.rank == 0:
            print(f"[dmf] resume=auto: {checkpoints} has no last.ckpt; continuing from {latest.name}, the latest "
                  f"checkpoint that resumes the run", flush=True)
        return str(latest)
    if others:
        raise ResultExistsError(f"{checkpoints} holds checkpoints of an earlier run ({_names(others)}) and no "
                                f"last.ckpt, and none of them resumes it (EMA-only snapshots, or unreadable): a new "
                                f"run there would mix with them. Fix: choose another run dir (run_dir=<folder>; "
                                f"ckpt=<one of them> starts from its weights)")
    return None


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


def build_training(cfg: DictConfig, batch, resume: str | None) -> tuple:
    """The data, the module (network from cfg.ckpt on a start), the callbacks and Lightning's trainer."""
    datamodule = instantiate(cfg.data.datamodule, batch_size=batch.per_device)
    check_data(datamodule)
    # the EMA copy is in eval mode on purpose; Lightning would warn about it at every start
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    # our datamodules resume mid-epoch themselves (dmf/data/resume_position.py); Lightning cannot see that
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
    # Lightning prints its messages through its own handler; Hydra's root handler would repeat each one
    logging.getLogger("lightning").propagate = False
    L.seed_everything(cfg.seed, workers=True)  # the initial weights; per-rank draws are seeded in TrainModule
    run_dir = Path(cfg.run_dir)
    # a resume continues from its own weights, which Lightning loads: ckpt= (reported as not used) is not read
    net = build_network(cfg, initialise=resume is None)
    module = TrainModule(net, build_objective(cfg), optim=cfg.optim, ema=cfg.ema, seed=cfg.seed)
    final = FinalLast(run_dir / "checkpoints")
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + run_guards(cfg) + [final]
    trainer = L.Trainer(**trainer_kwargs(cfg, batch.accumulate), logger=instantiate(cfg.logger),
                        callbacks=callbacks, default_root_dir=str(run_dir))
    if trainer.world_size != batch.world_size:
        raise RuntimeError(f"Lightning started {trainer.world_size} processes but the batch was laid out for "
                           f"{batch.world_size} (trainer.devices x trainer.num_nodes); set them to match the launcher")
    return datamodule, module, trainer, final


def check_train(cfg: DictConfig, job: list[str], sweep: list) -> None:
    """Each job of a -m sweep of mode=train, before the first one starts (dmf/config/launch.py)."""
    here = runs_here(job)
    check_strategy(cfg)
    check_jvp_attention(cfg)
    launch_checks(cfg, here)
    if here:
        check_attention_device(cfg)


def train(cfg: DictConfig) -> TrainModule:
    check_strategy(cfg)  # a strategy or kernel that cannot train this objective stops before anything else
    check_jvp_attention(cfg)
    batch = preflight(cfg)  # before any rank starts or anything is built
    check_attention_device(cfg)
    resume = resume_path(cfg)
    check_resume(cfg, resume)  # a resume must not rewrite the run's history
    run_dir = Path(cfg.run_dir)
    try:
        datamodule, module, trainer, final = build_training(cfg, batch, resume)
    except BaseException:
        if rank_zero_only.rank == 0:  # this attempt never trained: the run's record stays the one before
            try:
                mark_last_attempt(run_dir, "failed before training")
            except OSError as err:  # the build's own error is the one to report
                print(f"[dmf] could not mark the attempt in {run_dir}: {err}", flush=True)
        raise
    if trainer.is_global_zero:
        print(f"[dmf] {batch.describe()}", flush=True)
    log_run_config(trainer.loggers, cfg, batch)
    if resume and trainer.is_global_zero:  # after every check: a refused launch moves nothing
        set_aside = set_aside_later(run_dir / "checkpoints", Path(resume))
        if set_aside:
            print(f"[dmf] resuming at the step of {Path(resume).name}: the checkpoints written after it "
                  f"({_names(set_aside[1])}) are moved, kept, to {set_aside[0]}", flush=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    if resume and (final.start_step is None or trainer.global_step == final.start_step):
        # no checkpoint is written, and the attempt is not the run's record: either would give this launch's config
        # (e.g. a lower trainer.max_steps) to weights trained with another
        if trainer.is_global_zero:
            mark_last_attempt(run_dir, "nothing trained")
            last, kept = run_dir / "checkpoints" / "last.ckpt", "no checkpoint is written"
            if not last.exists():  # resumed from a snapshot: later stages and resumes read the run's state here
                with atomic_path(last) as tmp:
                    shutil.copyfile(resume, tmp)
                kept = f"{Path(resume).name}, the run's latest state, is copied to last.ckpt"
            print(f"[dmf] nothing to train: {resume} is at step {trainer.global_step} (trainer.max_steps="
                  f"{cfg.trainer.max_steps}); {kept}", flush=True)
        return module
    if not cfg.trainer.fast_dev_run and not final.saved:
        # Lightning saves `last` only on its own schedule; the final state must always be on disk (FinalLast wrote
        # it at the last step's end when the run ended by trainer.max_steps)
        trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # resumable: all of it
    return module
