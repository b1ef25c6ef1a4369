"""On-disk names of the two latent layouts and their index files.

Reference layout (what the published preprocessing writes and the seed code reads):
    <root>/vae-sd/00000/img-mean-std-00000000.npy   float32 (2C, h, w) = [mean; std]
    <root>/vae-sd/dataset.json                      {"labels": [["00000/img-mean-std-00000000.npy", 417], ...]}
Shards (ours):
    <root>/wds/latents-000000.tar   members <key>.moments.npy (same array) and <key>.cls (label, ASCII)
    <root>/wds/manifest.json        shard list with counts, num_samples, class counts, moments shape
The key is the 8-digit index of the image in the sorted source listing, the same number as in the
.npy file name, so a shard sample and its .npy file can always be matched.
"""
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from dmf.core.files import atomic_path, write_bytes_atomic

NPY_DIR = "vae-sd"
WDS_DIR = "wds"
STATE_DIR = ".preprocess"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dmf-latent-shards/1"


def npy_relpath(index: int, folder_size: int = 1000) -> str:
    return f"{index // folder_size:05d}/img-mean-std-{index:08d}.npy"


def shard_name(shard: int) -> str:
    return f"latents-{shard:06d}.tar"


def sample_key(index: int) -> str:
    return f"{index:08d}"


def npy_dir(root: str | os.PathLike) -> Path:
    """The folder holding dataset.json: `root/vae-sd` or `root` itself if it is that folder."""
    root = Path(root).expanduser()
    if (root / NPY_DIR / "dataset.json").is_file():
        return root / NPY_DIR
    if (root / "dataset.json").is_file():
        return root
    raise FileNotFoundError(
        f"no {NPY_DIR}/dataset.json under {root}: not a latent folder. Make one with "
        f"`python run.py mode=preprocess data=<config> preprocess.input=<images>` (see docs/data.md)")


def wds_dir(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    for cand in (root / WDS_DIR, root):
        if (cand / MANIFEST).is_file():
            return cand
    raise FileNotFoundError(
        f"no {WDS_DIR}/{MANIFEST} under {root}: not a shard folder. Make one with "
        f"`python run.py mode=preprocess data=<config>_wds preprocess.input=<images or latent folder>`")


def write_json_atomic(path: Path, obj) -> None:
    """Compact JSON (ImageNet's label table has 1.28M entries), written atomically."""
    write_bytes_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


def read_json(path: Path):
    with open(path, "rb") as f:
        return json.load(f)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: identical bytes on every run
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples) -> None:
    """samples: iterable of (index, moments float32, label). Written to a temp file, then renamed."""
    with atomic_path(path) as tmp, tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index, moments, label in samples:
            key = sample_key(index)
            _add_member(tar, f"{key}.moments.npy", npy_bytes(moments))
            _add_member(tar, f"{key}.cls", str(int(label)).encode())


def shard_keys(path: Path) -> list[str]:
    """Keys of the samples in a shard (headers only), in order; raises on a truncated or corrupt tar."""
    with tarfile.open(path, mode="r") as tar:
        names = tar.getnames()
    keys = [n.split(".", 1)[0] for n in names if n.endswith(".moments.npy")]
    if len(names) != 2 * len(keys):
        raise ValueError(f"{path}: {len(names)} members for {len(keys)} samples (expected .moments.npy + .cls each)")
    return keys
