"""Where the project keeps what it computes once and reuses: $DMF_CACHE, else ~/.cache/dmf (the digits classifier and
REPA stand-in encoder, the file-hash cache)."""
import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("DMF_CACHE", Path.home() / ".cache" / "dmf"))
