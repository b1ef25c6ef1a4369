"""Atomic writes, the one rule for every file a run leaves behind (checkpoints, statistics, samples, records):
write beside the target, then rename over it, so a reader or a resumed run sees the old file or the new one,
never half of either. And folder locks, for work that jobs running at once may share."""
import csv
import fcntl
import io
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dmf.core.launch import launch_id, leads_launch
from dmf.core.launch_time import WAIT
from dmf.core.ranks import launch_ranks


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# what open() gives a new file; some writers create theirs private (safetensors: 0600), unlike the files beside them
FILE_MODE = _default_mode()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden temporary path beside `path` (same suffix, so writers that append one, like np.savez,
    keep it); when the block ends without error the file is flushed to disk and renamed to `path`; on error
    the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj, **dumps_kwargs) -> Path:
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs))


def write_csv_atomic(path: str | os.PathLike, rows: list[dict], fieldnames: list[str], **writer_kwargs) -> Path:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames, **writer_kwargs)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, text.getvalue())


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Exclusive use of `folder` across launches (sweep jobs sharing a stage): the second waits for the first.
    Within a launch of several processes (DDP ranks, which train and evaluate in step), rank 0 holds it for all:
    the other ranks wait until it does, then go on beside it (waiting on the lock itself, they would never come
    to the training that rank 0, holding it, waits for them in)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entry = launch_id(), folder.resolve()
    _entries[entry] += 1  # every rank of a launch enters the same locks in the same order
    holder = f"{entry[0]} #{_entries[entry]}"
    owner = folder / ".lock.owner"
    if not leads_launch():
        _follow(owner, holder)
        yield folder
        return
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        held = os.environ.get(HELD, "")
        os.environ[HELD] = f"{held}{holder}\n"  # what a process Lightning starts now finds its rank 0 holding
        try:
            write_text_atomic(owner, holder)
            yield folder
        finally:
            os.environ[HELD] = held
            fcntl.flock(f, fcntl.LOCK_UN)


HELD = "DMF_HELD_LOCKS"
_entries: Counter[tuple[str, Path]] = Counter()
_caught_up = False  # a process Lightning started has come to a lock its rank 0 held when starting it


def _follow(owner: Path, holder: str) -> None:
    """A rank other than 0 goes on once its rank 0 holds the lock. A process that Lightning started (trainer.devices=N)
    replays its job from the start: the locks its rank 0 had already left when starting it are passed as they are."""
    global _caught_up
    if launch_ranks() is None and not _caught_up:
        _caught_up = holder in os.environ.get(HELD, "").splitlines()
        return
    start, said, free_since = time.monotonic(), False, None
    while not (owner.exists() and owner.read_text() == holder):
        now = time.monotonic()
        if not said and now - start > 30:
            print(f"[dmf] waiting for rank 0 of this launch to take the lock on {owner.parent} (another job may "
                  f"hold it)", flush=True)
            said = True
        if not _is_free(owner.parent / ".lock"):  # another job holds it: wait as long as it works
            free_since = None
        elif now - (free_since := free_since or now) > WAIT.total_seconds():
            # under srun a task's death does not end the others: without this, the job would idle to its limit
            raise RuntimeError(f"rank 0 of this launch has not taken the lock on {owner.parent} in "
                               f"{WAIT.total_seconds():.0f} s while no job held it: it has most likely stopped (see "
                               f"its log); this rank stops too")
        time.sleep(0.5)


def _is_free(lock: Path) -> bool:
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True
