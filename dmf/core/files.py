"""Atomic writes, the one rule for every file a run leaves behind (checkpoints, statistics, samples, records):
write beside the target, then rename over it, so a reader or a resumed run sees the old file or the new one,
never half of either. And folder locks, for work that jobs running at once may share."""
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Exclusive use of `folder` across processes (sweep jobs sharing a stage): the second waits for the first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
