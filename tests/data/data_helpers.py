"""Helpers for the data tests (fixtures live in conftest.py)."""
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from dmf.data import layout as L

RESOLUTION = 64  # the tiny VAE downsamples by 8 -> moments (8, 8, 8)
CLASSES = ("n01_cat", "n02_dog", "n03_tree")


def tiny_autoencoder(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                         norm_num_groups=4, sample_size=RESOLUTION)


def write_images(root: Path) -> Path:
    """Nine real photos (crops of scikit-learn's sample images) in 3 class folders, in assorted sizes,
    aspect ratios and formats, including one smaller than the crop and a grayscale PNG."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two 427x640 RGB photos
    sizes = [(200, 150), (90, 300), (40, 50)]  # (h, w): portrait, very wide, smaller than RESOLUTION
    for c, name in enumerate(CLASSES):
        for k, (h, w) in enumerate(sizes):
            crop = photos[(c + k) % 2][20 * c:20 * c + h, 30 * k:30 * k + w]
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            if c == 2 and k == 0:
                PIL.Image.fromarray(crop).convert("L").save(folder / f"img{k}.png")
            else:
                PIL.Image.fromarray(crop).save(folder / f"img{k}.jpg", quality=90)
    return root


def run_preprocess(source, out, vae_dir, **kw):
    from dmf.data.preprocess import preprocess
    from dmf.data.vae import SDVAE

    args = dict(layout="both", folder_size=4, shard_size=4, batch_size=3, num_workers=0, progress=False,
                device="cpu")
    args.update(kw)
    return preprocess(source, out, RESOLUTION, SDVAE(str(vae_dir)), **args)


def tree_bytes(root: Path, sub: str) -> dict[str, bytes]:
    """Every file under root/sub (temp/hidden state excluded) -> its bytes."""
    base = root / sub
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def write_key_shards(directory: Path, counts, shape=(2, 2, 2), num_classes=5, std=0.0) -> tuple[list[str], list[int]]:
    """Shards whose sample k has mean = k and std = `std` (0: the latent read back identifies the sample)."""
    urls, keys, k = [], [], 0
    for s, n in enumerate(counts):
        samples = []
        for _ in range(n):
            m = np.full(shape, std, np.float32)
            m[: shape[0] // 2] = k
            samples.append((k, m, k % num_classes))
            keys.append(k)
            k += 1
        path = directory / L.shard_name(s)
        L.write_shard(path, samples)
        urls.append(str(path))
    return urls, keys
