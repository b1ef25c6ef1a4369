"""Train into a run folder, or reuse the finished run there: what recipes (pipeline stages, paper rows and their
shared stages) do with each training they need. One process trains, the others wait for it (a folder lock: SLURM
jobs of one sweep share stages); a finished run (its marker file and last.ckpt) is reused only if it was trained with
the values this launch asks for, as its checkpoint records them."""
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from dmf.core.errors import ConfigError
from dmf.core.files import folder_lock, write_text_atomic
from dmf.train.entry import train
from dmf.train.resume_guard import finished_differences


def check_finished(cfg: DictConfig, marker: str, stale: Callable[[Path, list[str]], str]) -> Path | None:
    """The last.ckpt of a finished run in cfg.run_dir (its `marker` file is written after training) that this launch
    may reuse, or None; one trained with other values stops with stale(last, differences), the caller's message."""
    run_dir = Path(cfg.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not ((run_dir / marker).exists() and last.exists()):
        return None
    if differences := finished_differences(last, cfg):
        raise ConfigError(stale(last, differences))
    return last


def train_or_reuse(cfg: DictConfig, marker: str, record: str, stale: Callable[[Path, list[str]], str],
                   say: Callable[[str], None] = print) -> Path:
    """Train `cfg` into cfg.run_dir and write `record` to its `marker` file, or reuse the finished run there; returns
    last.ckpt."""
    run_dir = Path(cfg.run_dir)
    with folder_lock(run_dir):
        if (last := check_finished(cfg, marker, stale)) is not None:
            say(f"reusing the finished run {run_dir} (trained with these values)")
            return last
        train(cfg)
        write_text_atomic(run_dir / marker, record)
    return run_dir / "checkpoints" / "last.ckpt"
