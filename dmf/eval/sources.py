"""Datasets of real images for reference statistics. Each yields (x, label) with x either uint8 (C, H, W)
images, float images in [-1, 1], or model-space latents (eval.ref_space=latent: decoded with data.vae)."""
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def center_crop_dhariwal(img, size: int):
    """ADM's center crop (also the reference preprocessing): halve with BOX while large, resize BICUBIC so the
    short side is `size`, then crop the center."""
    from PIL import Image

    while min(*img.size) >= 2 * size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.array(img)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top: top + size, left: left + size]


class ImageFolder(Dataset):
    """Every image under `path` (recursive, sorted). Labels from an EDM2-style dataset.json if present, else the
    index of the first sub-folder name, else 0. `resolution`: ADM center crop to that size (None: as stored,
    which must then be one size for all)."""

    def __init__(self, path: str, resolution: int | None = None):
        self.root = Path(path)
        if not self.root.is_dir():
            raise FileNotFoundError(f"eval.ref_source.path={path} is not a directory of images")
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
        self.resolution = resolution
        self.labels = self._labels()

    def _labels(self) -> list[int]:
        meta = self.root / "dataset.json"
        if meta.exists():
            table = dict(json.loads(meta.read_text()).get("labels") or [])
            return [int(table.get(p.relative_to(self.root).as_posix(), 0)) for p in self.files]
        dirs = sorted({p.relative_to(self.root).parts[0] for p in self.files if len(p.relative_to(self.root).parts) > 1})
        index = {d: i for i, d in enumerate(dirs)}
        return [index.get(p.relative_to(self.root).parts[0], 0) for p in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as img:
            img = img.convert("RGB")
            arr = center_crop_dhariwal(img, self.resolution) if self.resolution else np.array(img)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), self.labels[i]


class WebDatasetImages(IterableDataset):
    """Images from webdataset shards (`urls`: brace pattern or list); labels from `cls` when present."""

    def __init__(self, urls, resolution: int | None = None, image_key: str = "jpg;jpeg;png;webp",
                 label_key: str = "cls"):
        self.urls, self.resolution, self.image_key, self.label_key = urls, resolution, image_key, label_key

    def __iter__(self):
        import webdataset as wds

        urls = list(self.urls) if not isinstance(self.urls, str) else self.urls
        ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")
        for sample in ds:
            img = next((sample[k] for k in self.image_key.split(";") if k in sample), None)
            if img is None:
                raise KeyError(f"webdataset sample {sample.get('__key__')} has none of {self.image_key} "
                               f"(keys {sorted(sample)}): set eval.ref_source.image_key")
            img = img.convert("RGB")
            arr = center_crop_dhariwal(img, self.resolution) if self.resolution else np.array(img)
            label = sample.get(self.label_key, 0)
            yield torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), int(label) if label != "" else 0


def from_config(dataset: Dataset) -> Dataset:
    """`eval/ref_source=dataset`: Hydra has already built eval.ref_source.dataset (any (x, y) Dataset)."""
    if not hasattr(dataset, "__getitem__") and not hasattr(dataset, "__iter__"):
        raise TypeError(f"eval.ref_source.dataset built a {type(dataset).__name__}, not a torch Dataset")
    return dataset
