"""A run's checkpoint files. ModelCheckpoint whose periodic snapshots can keep the EMA weights only (`ema_only`; a
full DMF-XL/2 state with the online weights and AdamW moments is ~11 GB). `last.ckpt` stays complete: resume=auto
uses it. An EMA-only snapshot serves sampling, evaluation and fine-tuning (ckpt=), not resume=. Which snapshot
resumes a run, and the files a resume sets aside."""
import time
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from dmf.models.checkpoint import safe_load


class EMASnapshots(ModelCheckpoint):
    def __init__(self, *args, ema_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema_only = ema_only

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        if not self.ema_only or Path(filepath).stem.startswith(self.CHECKPOINT_NAME_LAST):
            return super()._save_checkpoint(trainer, filepath)
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=True)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("ema_net.")}
        trainer.strategy.save_checkpoint(checkpoint, filepath)  # rank 0 writes
        trainer.strategy.barrier("dmf_ema_snapshot")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath


def latest_resumable(dirpath: Path) -> tuple[Path | None, list[Path]]:
    """The periodic checkpoint in dirpath at the highest step that can resume the run (it holds the optimizer state),
    or None; and every other checkpoint file there (last.ckpt aside): EMA-only, or unreadable (a kill mid-write)."""
    best, others = None, []
    for path in sorted(Path(dirpath).glob("*.ckpt")):
        if path.name == "last.ckpt":
            continue
        try:
            saved = safe_load(path, mmap=True)
        except Exception:  # a partial file: not resumable, and still another run's file
            saved = None
        if isinstance(saved, dict) and saved.get("optimizer_states"):
            step = int(saved.get("global_step", 0))
            if best is None or step > best[0]:
                others += [best[1]] if best else []
                best = (step, path)
                continue
        others.append(path)
    return (best[1] if best else None), others


def saved_step(path: Path) -> int | None:
    """The step a checkpoint file was written at, or None where it cannot be read (a kill mid-write)."""
    try:
        saved = safe_load(path, mmap=True)
    except Exception:
        return None
    return int(saved.get("global_step", 0)) if isinstance(saved, dict) else None


def set_aside_later(dirpath: Path, resume: Path) -> tuple[Path, list[Path]] | None:
    """A resume from step S redoes the steps after S: the checkpoints written after S (last.ckpt and later snapshots
    of a rolled-back run) move, kept, to dirpath/superseded-<UTC time>/. Left in place, resume=auto would continue
    from them after a stop, and the redone steps' snapshots would be written beside them as step_N-v1.ckpt. A rename,
    so no copy of an ~11 GB file. Returns the folder and the files moved, or None."""
    start = saved_step(resume)
    later = [p for p in sorted(Path(dirpath).glob("*.ckpt"))
             if start is not None and p.resolve() != resume.resolve() and (saved_step(p) or -1) > start]
    if not later:
        return None
    aside = Path(dirpath) / time.strftime("superseded-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir()
    for path in later:
        path.rename(aside / path.name)
    return aside, later
