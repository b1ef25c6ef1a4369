"""Finding feature-network weights: an explicit path or hf:// URI, else the torch hub cache, else a download;
offline, one error that names the file, where to put it and the config key that points at it."""
import os
import shutil
import urllib.request
from pathlib import Path

import torch

from dmf.core.errors import MissingFileError
from dmf.core.files import atomic_path
from dmf.core.offline import downloads_off
from dmf.models.hub import resolve_path


def cache_dir() -> Path:
    """Where torch hub (and torch-fidelity) keep downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(weights: str | os.PathLike | None, filename: str, url: str | None, what: str, config_key: str,
                   download: bool = True, timeout_s: float = 30.0) -> Path:
    if weights:
        return resolve_path(weights, key=f"{config_key} ({what} weights)", download=download)
    cached = cache_dir() / filename
    if cached.exists():
        return cached
    if download and url and not downloads_off():
        try:
            with atomic_path(cached) as tmp, urllib.request.urlopen(url, timeout=timeout_s) as resp, \
                    open(tmp, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
            return cached
        except OSError as err:
            reason = f"downloading {url} failed ({type(err).__name__}: {err})"
    else:
        reason = "downloads are off (offline or download disabled)"
    source = f"download {url} on a connected machine and " if url else ""
    raise MissingFileError(
        f"{what} weights {filename} not found: {reason}. Fix: {source}put the file at {cached} "
        f"(the torch hub cache, $TORCH_HOME/hub/checkpoints) or pass {config_key}=<path or hf:// URI>."
    )
