"""Map-style dataset over the reference latent layout (<root>/vae-sd/, dataset.json), with the images of the
REPA authors' layout (<root>/images/, beside it) when asked for."""
import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from dmf.data.errors import DataError, ErrorPolicy, no_images
from dmf.data.images import decode_image
from dmf.data.latent import check_moments, expected_shape, load_npy
from dmf.data.layout import image_dir, image_relpath_of, npy_dir, read_json
from dmf.data.sample_draws import draw_latent, sample_generator

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_BAD = 32


def _walk(directory, suffix: str) -> set[str]:
    found = set()
    for dirpath, _dirs, files in os.walk(directory):
        rel = os.path.relpath(dirpath, directory).replace(os.sep, "/")
        found.update(f if rel == "." else f"{rel}/{f}" for f in files if f.endswith(suffix))
    return found


class LatentFolderDataset(Dataset):
    """Item i -> ((mean + std * e) * scale, label), e drawn fresh on every fetch; with `images`,
    (uint8 image (3, R, R), latent, label), the image the latent was encoded from (flipped with it).
    Fetched by (epoch, i) (the datamodule's EpochKeySampler), e and the flip come from a generator seeded by
    (seed, epoch, i); fetched by i alone, from torch's global RNG.

    Entries are the .npy files of dataset.json, sorted by path as in the seed code. With
    `check_files` the folder is walked once at start (like the seed code) so that a file without a
    label, or a label without a file, is reported before training rather than hours into it.
    With on_error=skip a bad file is counted, logged and replaced by the next good one (its own label
    comes with it), so batches keep their size and never hold a wrong sample.
    """

    def __init__(self, root, scale: float = 0.18215, latent_channels: int | None = None,
                 latent_size: int | None = None, num_classes: int | None = None, flip: bool = False,
                 on_error: str = "raise", check_files: bool = True, images: bool = False, seed: int = 0):
        self.dir = npy_dir(root)
        self.scale, self.flip, self.seed = float(scale), bool(flip), int(seed)
        self.policy = ErrorPolicy(on_error, where=str(self.dir))
        index_file = self.dir / "dataset.json"
        table = read_json(index_file).get("labels")
        if not table:
            raise DataError(f"{index_file}: no labels (class-conditional training needs [[relpath, label], ...])")
        labels, rejected = {}, set()  # rejected: bad label already counted; its file is not a second bad item
        for entry in table:
            rel, label = str(entry[0]).replace("\\", "/"), entry[1]
            if not isinstance(label, int) or label < 0 or (num_classes is not None and label >= num_classes):
                self.policy(DataError(f"{self.dir / rel}: label {label!r} in {index_file} is not a class index in "
                                      f"[0, {num_classes})"))
                rejected.add(rel)
                continue
            labels[rel] = label
        if check_files:
            on_disk = _walk(self.dir, ".npy")
            for rel in sorted(on_disk - labels.keys() - rejected):
                self.policy(DataError(f"{self.dir / rel}: no label for this file in {index_file} (stale index "
                                      f"or stray file); re-run preprocessing or remove the file"))
            for rel in sorted(labels.keys() - on_disk):
                self.policy(DataError(f"{self.dir / rel}: listed in {index_file} but missing on disk"))
                del labels[rel]
        if images:
            self._pair_images(labels, check_files)
        if not labels:
            raise DataError(f"{self.dir}: no usable latents")
        if self.policy.skipped:
            log.warning("%s: %d bad index entries or files skipped at start (on_error=skip); %d latents remain",
                        self.dir, self.policy.skipped, len(labels))
        rels = sorted(labels)
        # numpy arrays, not lists of str: forked DataLoader workers then share them without copy-on-read
        self.relpaths = np.array(rels, dtype=np.bytes_)
        self.labels = np.array([labels[r] for r in rels], dtype=np.int64)
        self.images = bool(images)
        self.image_relpaths = np.array([image_relpath_of(r) for r in rels] if images else [], dtype=np.bytes_)
        self.shape = expected_shape(latent_channels, latent_size)
        self.image_shape = None
        self._probe()

    def _pair_images(self, labels: dict, check_files: bool) -> None:
        """Each latent's image, by the shared numbering, with the same label (else the pair is a bad item)."""
        self.image_dir = image_dir(self.dir)
        index_file = self.image_dir / "dataset.json"
        if not index_file.is_file():
            raise FileNotFoundError(no_images(str(self.dir.parent), f"there is no {index_file.relative_to(self.dir.parent)}"))
        table = {str(rel).replace("\\", "/"): label for rel, label in read_json(index_file).get("labels") or []}
        on_disk = _walk(self.image_dir, ".png") if check_files else None
        for rel in sorted(labels):
            image = image_relpath_of(rel)
            if table.get(image) != labels[rel]:
                found = "no entry" if image not in table else f"label {table[image]!r}"
                self.policy(DataError(f"{self.image_dir / image}: {found} in {index_file}, but its latent {rel} has "
                                      f"label {labels[rel]}: images/ and {self.dir.name}/ are not from one preprocessing run"))
            elif on_disk is not None and image not in on_disk:
                self.policy(DataError(f"{self.image_dir / image}: listed in {index_file} but missing on disk"))
            else:
                continue
            del labels[rel]

    def _probe(self) -> None:
        """Read a few files now: a wrong resolution or VAE is one clear error before any training."""
        last = None
        for i in range(min(3, len(self))):
            try:
                arr = self._load(i)
                self.shape = self.shape or tuple(arr.shape)
                if self.images:
                    self.image_shape = tuple(self._load_image(i).shape)
                return
            except DataError as err:
                if "data config expects" in str(err):
                    raise
                last = err
        raise last

    def __len__(self) -> int:
        return len(self.relpaths)

    def path(self, i: int) -> str:
        return str(self.dir / self.relpaths[i].decode())

    def _load(self, i: int) -> np.ndarray:
        path = self.path(i)
        return check_moments(load_npy(path, path), self.shape, path)

    def _load_image(self, i: int) -> torch.Tensor:
        path = str(self.image_dir / self.image_relpaths[i].decode())
        try:
            with open(path, "rb") as f:
                image = decode_image(f.read(), path)
        except FileNotFoundError as err:
            raise DataError(f"{path}: the image is missing (listed but not on disk); re-run preprocessing, or set "
                            f"data.on_error=skip") from err
        if self.image_shape is not None and tuple(image.shape) != self.image_shape:
            raise DataError(f"{path}: image of shape {tuple(image.shape)}, the others are {self.image_shape}: "
                            f"images/ mixes resolutions; re-run preprocessing")
        return image

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, i = key if isinstance(key, tuple) else (None, key)
        for attempt in range(MAX_CONSECUTIVE_BAD):
            j = (i + attempt) % len(self)
            try:
                moments = self._load(j)
                image = self._load_image(j) if self.images else None
                break
            except DataError as err:
                self.policy(err)  # raises unless on_error=skip
        else:
            raise DataError(f"{self.dir}: {MAX_CONSECUTIVE_BAD} bad files in a row from index {i}; the folder "
                            f"is damaged beyond skipping")
        generator = None if epoch is None else sample_generator(self.seed, epoch, i)
        latent, flip = draw_latent(torch.from_numpy(moments), self.scale, self.flip, generator)
        label = int(self.labels[j])
        if image is None:
            return latent, label
        return (image.flip(-1) if flip else image), latent, label
