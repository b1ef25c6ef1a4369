"""Datasets of real images for reference statistics. Each yields (x, label) with x either uint8 (C, H, W)
images, float images in [-1, 1], or model-space latents (eval.ref_space=latent: decoded with data.vae)."""
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from dmf.core.errors import MissingFileError
from dmf.data.images import center_crop_adm, list_images


class ImageFolder(Dataset):
    """Every image under `path`, in the order and with the labels preprocessing gives them (sorted paths; labels
    from an EDM2-style dataset.json, else the class folders, else 0). `resolution`: ADM center crop to that size
    (None: as stored, which must then be one size for all)."""

    def __init__(self, path: str, resolution: int | None = None):
        self.root = Path(path)
        if not self.root.is_dir():
            raise MissingFileError(f"eval.ref_source.path={path} is not a directory of images")
        listing = list_images(self.root)  # the preprocessing's order and labels (dataset.json or class folders)
        self.files = [self.root / rel for rel in listing.relpaths]
        self.labels = listing.labels.tolist()
        self.resolution = resolution

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as img:
            img = img.convert("RGB")
            arr = center_crop_adm(img, self.resolution) if self.resolution else np.array(img)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), self.labels[i]


class WebDatasetImages(IterableDataset):
    """Images from webdataset shards (`urls`: brace pattern or list); labels from `cls` when present."""

    def __init__(self, urls, resolution: int | None = None, image_key: str = "jpg;jpeg;png;webp",
                 label_key: str = "cls"):
        self.urls, self.resolution, self.image_key, self.label_key = urls, resolution, image_key, label_key
        from webdataset.shardlists import expand_urls

        listed = [u for pattern in ([urls] if isinstance(urls, str) else list(urls)) for u in expand_urls(pattern)]
        missing = [u for u in listed if "://" not in u and not u.startswith("pipe:") and not Path(u).is_file()]
        if missing:  # before the feature network is built and loaded
            raise MissingFileError(f"eval.ref_source.urls: {len(missing)} of {len(listed)} shards do not exist, e.g. "
                                   f"{missing[0]}; pass the shards' brace pattern, e.g. "
                                   f"'eval.ref_source.urls=\"/data/wds/train-{{000000..000146}}.tar\"'")

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
            arr = center_crop_adm(img, self.resolution) if self.resolution else np.array(img)
            label = sample.get(self.label_key, 0)
            yield torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), int(label) if label != "" else 0


def from_config(dataset: Dataset) -> Dataset:
    """`eval/ref_source=dataset`: Hydra has already built eval.ref_source.dataset (any (x, y) Dataset)."""
    if not hasattr(dataset, "__getitem__") and not hasattr(dataset, "__iter__"):
        raise TypeError(f"eval.ref_source.dataset built a {type(dataset).__name__}, not a torch Dataset")
    return dataset
