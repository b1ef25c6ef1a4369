"""What a run is, kept with it: every checkpoint records the composed config and the network's architecture, every
attempt (start or resume) keeps its config under <run_dir>/config_history/, and a resume is compared with the
config that produced the checkpoint before anything is built.

- Keys that cannot change mid-run (IMMUTABLE: the model, objective, data, seed, guidance, time proposal,
  optimizer and EMA settings; a resumed optimizer keeps its own state, so a new optim.lr would be ignored) stop
  the resume with the difference and the fix. A few data-loading keys (MUTABLE_INSIDE) may change.
- Anything else (trainer.max_steps, logging, callbacks, ...) is applied and listed.
- Every attempt is kept (dmf.core.run_history), a refused resume's marked `refused`; run.py puts back the last
  accepted attempt's .hydra after any refused launch.
"""
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dmf.core.options import flatten, under
from dmf.core.errors import UsageError
from dmf.core.run_history import HISTORY, record_attempt
from dmf.models.checkpoint import ARCHITECTURE_KEY, CONFIG_KEY, architecture, safe_load

IMMUTABLE = ("model", "objective", "data", "seed", "guidance", "time", "optim", "ema")
MUTABLE_INSIDE = ("model.attention", "data.root", "data.on_error", "data.max_batch_per_device",
                  # the datamodule's copies of data.root and data.on_error (${data.root}) move with them
                  "data.datamodule.root", "data.datamodule.on_error", "data.datamodule.check_files",
                  "data.datamodule.num_workers", "data.datamodule.persistent_workers", "data.datamodule.prefetch_factor",
                  "data.datamodule.pin_memory")
IGNORED = ("run_dir", "resume", "mode", "ckpt")  # ckpt only initialises a new run; a resume restores everything


class ResumeConflict(UsageError, ValueError):
    pass


def plain_config(cfg: DictConfig) -> dict:
    """The config as plain values (safe to store in a checkpoint), resolved where it can be outside Hydra."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} when composed without a Hydra run
        return OmegaConf.to_container(cfg, resolve=False)


class RunRecord(L.Callback):
    """Adds the config and the network architecture to every checkpoint Lightning writes."""

    def __init__(self, cfg: DictConfig):
        self.config = plain_config(cfg)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[ARCHITECTURE_KEY] = architecture(pl_module.net)


def same_value(a, b) -> bool:
    """Equal, or two spellings of one file (relative and absolute, `..`): a rerun typed `run_dir=outputs/x` where the
    first run recorded Hydra's absolute path gives its stages the same checkpoints under other names."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)) or "://" in a + b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is gone: not shown to be the same
        return False


def compare(original: dict, new: dict) -> tuple[list[str], list[str]]:
    """(immutable differences, mutable differences) as 'key: old -> new' lines."""
    a, b = flatten(original), flatten(new)
    frozen, changed = [], []
    for key in sorted(set(a) | set(b)):
        if under(key, IGNORED) or same_value(a.get(key, "<unset>"), b.get(key, "<unset>")):
            continue
        line = f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}"
        (frozen if under(key, IMMUTABLE) and not under(key, MUTABLE_INSIDE) else changed).append(line)
    return frozen, changed


def finished_differences(ckpt: Path, cfg: DictConfig) -> list[str]:
    """How `cfg` differs from the config that trained the finished checkpoint in what its weights depend on: the
    keys that cannot change mid-run, the step count and the initial weights ('key: old -> new' lines); [] when the
    checkpoint records no config (then nothing can be checked)."""
    saved = safe_load(ckpt, key="ckpt", mmap=True)
    original = saved.get(CONFIG_KEY) if isinstance(saved, dict) else None
    if not isinstance(original, dict):
        return []
    new = plain_config(cfg)
    frozen, changed = compare(original, new)
    steps = [line for line in changed if line.startswith("trainer.max_steps:")]
    init = [] if same_value(original.get("ckpt"), new.get("ckpt")) else [
        f"ckpt: {original.get('ckpt')!r} -> {new.get('ckpt')!r}"]
    return frozen + steps + init


def trained_in(ckpt: Path, run_dir: Path) -> bool:
    """Whether the checkpoint records run_dir as its run's folder: a copy of this run's file kept elsewhere."""
    try:
        saved = safe_load(ckpt, mmap=True)
    except Exception:  # unreadable: not shown to be this run's
        return False
    recorded = saved.get(CONFIG_KEY, {}).get("run_dir") if isinstance(saved, dict) else None
    return isinstance(recorded, str) and Path(recorded).resolve() == Path(run_dir).resolve()


def _original_config(ckpt: str, key: str, run_dir: Path) -> dict | None:
    saved = safe_load(ckpt, key=key, mmap=True)  # also refuses an unreadable or unsafe file before Lightning reads it
    if isinstance(saved, dict) and isinstance(saved.get(CONFIG_KEY), dict):
        return saved[CONFIG_KEY]
    first = run_dir / HISTORY / "attempt_001" / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(first)) if first.exists() else None


def say(message: str) -> None:
    """Once per run, not once per rank."""
    if rank_zero_only.rank == 0:
        print(message, flush=True)


def check_resume(cfg: DictConfig, ckpt: str | None) -> list[str]:
    """Call before building anything. Records this attempt; on a resume, raises ResumeConflict if an immutable key
    differs from the checkpoint's config, and returns (and prints) the changed mutable keys."""
    run_dir = Path(cfg.run_dir)
    new = plain_config(cfg)
    if ckpt is None:
        if rank_zero_only.rank == 0:
            record_attempt(run_dir, new, "accepted (start)", None)
        return []
    key = "resume" if cfg.get("resume") not in (None, "auto") else "resume=auto"
    original = _original_config(ckpt, key, run_dir)
    if original is None:
        say(f"[dmf] resume from {ckpt}: it records no config (an older checkpoint); changes cannot be checked")
        if rank_zero_only.rank == 0:
            record_attempt(run_dir, new, "accepted (resume, unchecked)", ckpt)
        return []
    frozen, changed = compare(original, new)
    if new.get("ckpt") is not None and not same_value(new.get("ckpt"), original.get("ckpt")):  # it would not be read
        frozen.append(f"ckpt: {original.get('ckpt')!r} -> {new.get('ckpt')!r} (ckpt= initialises a new run; a resume "
                      f"continues from its own weights. To continue, drop ckpt=; to start from it, use another "
                      f"run_dir)")
    if frozen:
        if rank_zero_only.rank == 0:
            record_attempt(run_dir, new, "refused", ckpt)
        raise ResumeConflict(
            f"{key} ({ckpt}): the run was trained with other values of settings that cannot change mid-run:\n  "
            + "\n  ".join(frozen)
            + f"\nFix: resume with the original values, or start a new run from these weights (ckpt={ckpt} "
              f"resume=null and another run_dir). The run's config record is unchanged ({run_dir / HISTORY}).")
    if rank_zero_only.rank == 0:
        record_attempt(run_dir, new, "accepted (resume)", ckpt)
    if changed:
        say(f"[dmf] resuming {ckpt} with changed settings (applied):\n  " + "\n  ".join(changed))
    return changed
