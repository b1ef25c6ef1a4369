"""On-disk names of the two latent layouts and their index files.

Reference layout (what the published preprocessing writes and the seed code reads):
    <root>/vae-sd/00000/img-mean-std-00000000.npy   float32 (2C, h, w) = [mean; std]
    <root>/vae-sd/dataset.json                      {"labels": [["00000/img-mean-std-00000000.npy", 417], ...]}
    <root>/images/00000/img00000000.png             uint8 RGB, the ADM crop the latent was encoded from
    <root>/images/dataset.json                      {"labels": [["00000/img00000000.png", 417], ...]}
(images/ is the REPA authors' layout, read beside vae-sd/ by REPA pretraining: same numbers, same labels.)
Shards (ours):
    <root>/wds/latents-000000.tar   members <key>.moments.npy (same array), <key>.cls (label, ASCII) and, when
                                    preprocessed with images, <key>.image.png (the same PNG as in images/)
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
IMAGE_DIR = "images"
IMAGE_MEMBER = "image.png"  # the image's suffix in a shard sample (webdataset: key.image.png)
WDS_DIR = "wds"
STATE_DIR = ".preprocess"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dmf-latent-shards/1"


def npy_relpath(index: int, folder_size: int = 1000) -> str:
    return f"{index // folder_size:05d}/img-mean-std-{index:08d}.npy"


def image_relpath(index: int, folder_size: int = 1000) -> str:
    return f"{index // folder_size:05d}/img{index:08d}.png"


def image_relpath_of(npy_relpath: str) -> str:
    """The image a latent file was encoded from, by the two tools' shared naming (img-mean-std-N.npy <- imgN.png)."""
    folder, _, name = npy_relpath.rpartition("/")
    if not (name.startswith("img-mean-std-") and name.endswith(".npy")):
        raise ValueError(f"{npy_relpath}: not named img-mean-std-<number>.npy, so its image in {IMAGE_DIR}/ "
                         f"cannot be found")
    return f"{folder}/img{name[len('img-mean-std-'):-len('.npy')]}.png".lstrip("/")


def image_dir(npy_directory: str | os.PathLike) -> Path:
    """images/ sits beside vae-sd/ (the folder holding the latents' dataset.json)."""
    return Path(npy_directory).parent / IMAGE_DIR


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
    """samples: iterable of (index, moments float32, label) or (index, moments, label, PNG bytes or None). Written
    to a temp file, then renamed."""
    with atomic_path(path) as tmp, tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index, moments, label, *png in samples:
            key = sample_key(index)
            _add_member(tar, f"{key}.moments.npy", npy_bytes(moments))
            _add_member(tar, f"{key}.cls", str(int(label)).encode())
            if png and png[0] is not None:
                _add_member(tar, f"{key}.{IMAGE_MEMBER}", png[0])


def shard_keys(path: Path, images: bool = False) -> list[str]:
    """Keys of the samples in a shard (headers only), in order; raises on a truncated or corrupt tar, or a
    sample without all its members (.moments.npy, .cls, and .image.png when the shards carry images)."""
    with tarfile.open(path, mode="r") as tar:
        names = tar.getnames()
    keys = [n.split(".", 1)[0] for n in names if n.endswith(".moments.npy")]
    suffixes = ("moments.npy", "cls", IMAGE_MEMBER) if images else ("moments.npy", "cls")
    if sorted(names) != sorted(f"{k}.{s}" for k in keys for s in suffixes):
        raise ValueError(f"{path}: {len(names)} members for {len(keys)} samples (expected "
                         f"{' + '.join('.' + s for s in suffixes)} each)")
    return keys
