"""Map-style dataset over the reference latent layout (<root>/vae-sd/, dataset.json)."""
import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from dmf.data.errors import DataError, ErrorPolicy
from dmf.data.latent import check_moments, expected_shape, load_npy, sample_latent
from dmf.data.layout import npy_dir, read_json

log = logging.getLogger(__name__)
MAX_CONSECUTIVE_BAD = 32


def _walk_npy(directory) -> set[str]:
    found = set()
    for dirpath, _dirs, files in os.walk(directory):
        rel = os.path.relpath(dirpath, directory).replace(os.sep, "/")
        found.update(f if rel == "." else f"{rel}/{f}" for f in files if f.endswith(".npy"))
    return found


class LatentFolderDataset(Dataset):
    """Item i -> ((mean + std * e) * scale, label), e drawn fresh on every fetch.

    Entries are the .npy files of dataset.json, sorted by path as in the seed code. With
    `check_files` the folder is walked once at start (like the seed code) so that a file without a
    label, or a label without a file, is reported before training rather than hours into it.
    With on_error=skip a bad file is counted, logged and replaced by the next good one (its own label
    comes with it), so batches keep their size and never hold a wrong sample.
    """

    def __init__(self, root, scale: float = 0.18215, latent_channels: int | None = None,
                 latent_size: int | None = None, num_classes: int | None = None, flip: bool = False,
                 on_error: str = "raise", check_files: bool = True):
        self.dir = npy_dir(root)
        self.scale, self.flip = float(scale), bool(flip)
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
            on_disk = _walk_npy(self.dir)
            for rel in sorted(on_disk - labels.keys() - rejected):
                self.policy(DataError(f"{self.dir / rel}: no label for this file in {index_file} (stale index "
                                      f"or stray file); re-run preprocessing or remove the file"))
            for rel in sorted(labels.keys() - on_disk):
                self.policy(DataError(f"{self.dir / rel}: listed in {index_file} but missing on disk"))
                del labels[rel]
        if not labels:
            raise DataError(f"{self.dir}: no usable latents")
        if self.policy.skipped:
            log.warning("%s: %d bad index entries or files skipped at start (on_error=skip); %d latents remain",
                        self.dir, self.policy.skipped, len(labels))
        rels = sorted(labels)
        # numpy arrays, not lists of str: forked DataLoader workers then share them without copy-on-read
        self.relpaths = np.array(rels, dtype=np.bytes_)
        self.labels = np.array([labels[r] for r in rels], dtype=np.int64)
        self.shape = expected_shape(latent_channels, latent_size)
        self._probe()

    def _probe(self) -> None:
        """Read a few files now: a wrong resolution or VAE is one clear error before any training."""
        last = None
        for i in range(min(3, len(self))):
            try:
                arr = self._load(i)
                self.shape = self.shape or tuple(arr.shape)
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

    def __getitem__(self, i: int):
        for attempt in range(MAX_CONSECUTIVE_BAD):
            j = (i + attempt) % len(self)
            try:
                moments = self._load(j)
                break
            except DataError as err:
                self.policy(err)  # raises unless on_error=skip
        else:
            raise DataError(f"{self.dir}: {MAX_CONSECUTIVE_BAD} bad files in a row from index {i}; the folder "
                            f"is damaged beyond skipping")
        flip = self.flip and bool(torch.rand(()) < 0.5)
        return sample_latent(torch.from_numpy(moments), self.scale, flip=flip), int(self.labels[j])
