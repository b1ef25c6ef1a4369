"""What a result was made from, by content: the sha256 of a weights or statistics file. A path says where a file
is, not what it holds (last.ckpt changes as training goes on). Hashes are cached by (path, size, mtime) in
$DMF_CACHE/file_hashes.json, so a multi-GB checkpoint is read once, not at every evaluation."""
import hashlib
import json
import os
from pathlib import Path

from dmf.core.cache import cache_dir
from dmf.core.files import write_json_atomic


def _cache_file() -> Path:
    return cache_dir() / "file_hashes.json"


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged cache: recompute


def content_hash(path: str | os.PathLike) -> str:
    """sha256 hex digest of the file's bytes."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache_file = _cache_file()
    cache = _read_cache(cache_file)
    hit = cache.get(str(path))
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return hit["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    cache = _read_cache(cache_file)  # another process may have added entries meanwhile
    cache[str(path)] = {"stamp": stamp, "sha256": digest.hexdigest()}
    try:
        write_json_atomic(cache_file, cache, indent=0)
    except OSError:
        pass  # a read-only cache costs time, never correctness
    return digest.hexdigest()
