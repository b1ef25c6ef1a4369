"""Finding feature-network weights: an explicit path or hf:// URI, else the torch hub cache, else a download;
offline, one error that names the file, where to put it and the config key that points at it."""
import os
import urllib.request
from pathlib import Path

import torch

from dmf.models.hub import resolve_path


def offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("DMF_OFFLINE", "HF_HUB_OFFLINE"))


def cache_dir() -> Path:
    """Where torch hub (and torch-fidelity) keep downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(weights: str | os.PathLike | None, filename: str, url: str | None, what: str, config_key: str,
                   download: bool = True, timeout_s: float = 30.0) -> Path:
    if weights:
        try:
            return resolve_path(weights)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{what} weights: {err} (set by {config_key})") from err
    cached = cache_dir() / filename
    if cached.exists():
        return cached
    if download and url and not offline():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + f".part{os.getpid()}")
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
            tmp.replace(cached)
            return cached
        except OSError as err:
            tmp.unlink(missing_ok=True)
            reason = f"downloading {url} failed ({type(err).__name__}: {err})"
    else:
        reason = "downloads are off (offline or download disabled)"
    source = f"download {url} on a connected machine and " if url else ""
    raise FileNotFoundError(
        f"{what} weights {filename} not found: {reason}. Fix: {source}put the file at {cached} "
        f"(the torch hub cache, $TORCH_HOME/hub/checkpoints) or pass {config_key}=<path or hf:// URI>."
    )
