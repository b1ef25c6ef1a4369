"""Where preprocessing gets moments from: images through the VAE, or an existing .npy latent folder; with the
image's PNG beside them when images travel with the latents (process() yields (index, moments, error, png))."""
import re

import numpy as np
import torch
from torch.utils.data import Dataset

from dmf.data import layout as L
from dmf.data.images import CroppedImages, ImageListing
from dmf.data.latent import check_moments, load_npy


def list_latents(root) -> ImageListing:
    """A reference-layout folder as a listing: entries sorted by relpath (as the seed code does); the
    key of each entry is the number in its file name when every name has one, else its position."""
    directory = L.npy_dir(root)
    table = L.read_json(directory / "dataset.json").get("labels")
    if not table:
        raise ValueError(f"{directory}/dataset.json holds no labels")
    table = sorted((str(rel), int(lab)) for rel, lab in table)
    relpaths = [rel for rel, _ in table]
    labels = np.array([lab for _, lab in table], dtype=np.int64)
    numbers = [re.search(r"(\d+)\.npy$", rel) for rel in relpaths]
    keys = np.array([int(m.group(1)) for m in numbers]) if all(numbers) else np.arange(len(relpaths))
    if len(set(keys.tolist())) != len(keys):
        keys = np.arange(len(relpaths))
    return ImageListing(str(directory), relpaths, labels, [str(i) for i in range(int(labels.max()) + 1)], keys)


class _NpyMoments(Dataset):
    """Item -> (index, moments, error, PNG bytes of its image in `image_dir` or None)."""

    def __init__(self, listing: ImageListing, indices, known_bad: dict, image_dir: str | None = None):
        self.listing, self.indices, self.known_bad = listing, np.asarray(indices, dtype=np.int64), known_bad
        self.image_dir = image_dir

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        if index in self.known_bad:
            return index, None, self.known_bad[index], None
        rel = self.listing.relpaths[index]
        path = f"{self.listing.source}/{rel}"
        try:
            moments = torch.from_numpy(check_moments(load_npy(path, path), None, path))
            png = None
            if self.image_dir is not None:
                with open(f"{self.image_dir}/{L.image_relpath_of(rel)}", "rb") as f:
                    png = f.read()
            return index, moments, "", png
        except Exception as err:
            return index, None, str(err), None


def _collate_list(batch):
    indices, payload, errors, pngs = zip(*batch)
    return list(indices), list(payload), list(errors), list(pngs)


def _collate_images(batch):
    indices, images, errors, pngs = zip(*batch)
    return list(indices), torch.stack(images), list(errors), list(pngs)


class ImageEncoder:
    """Images -> ADM crop -> [-1, 1] -> VAE posterior moments, batched on `device`."""

    def __init__(self, listing: ImageListing, resolution: int, vae, device: torch.device, images: bool = False):
        self.listing, self.resolution, self.vae, self.device = listing, int(resolution), vae, device
        self.images = bool(images)
        self.collate = _collate_images

    def dataset(self, indices) -> Dataset:
        return CroppedImages(self.listing, self.resolution, indices, png=self.images)

    def process(self, batch) -> list[tuple[int, np.ndarray | None, str, bytes | None]]:
        indices, images, errors, pngs = batch
        ok = [k for k, e in enumerate(errors) if not e]
        out = [(i, None, e, None) for i, e in zip(indices, errors)]
        if ok:
            x = images[ok].to(self.device, non_blocking=True).float() / 127.5 - 1.0
            moments = self.vae.encode_moments(x).cpu().numpy()
            for k, m in zip(ok, moments):
                out[k] = (indices[k], m, "", pngs[k])
        return out


class LatentCopier:
    """Moments read from an existing .npy layout (re-packing into shards needs no VAE), with the PNGs of the
    images/ folder beside it when `images`."""

    def __init__(self, listing: ImageListing, known_bad: dict | None = None, images: bool = False):
        self.listing, self.known_bad = listing, known_bad or {}
        self.image_dir = str(L.image_dir(listing.source)) if images else None
        self.collate = _collate_list

    def dataset(self, indices) -> Dataset:
        return _NpyMoments(self.listing, indices, self.known_bad, self.image_dir)

    def process(self, batch):
        indices, payload, errors, pngs = batch
        return [(i, None if p is None else p.numpy(), e, png) for i, p, e, png in zip(indices, payload, errors, pngs)]
