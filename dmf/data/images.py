"""Source images for preprocessing: listing (folder or zip), labels, the ADM center crop, a Dataset; and the
stored crops (PNG) that travel with the latents for REPA.

Order and labels follow the reference tool (EDM2's dataset_tool, used by the published latents):
files sorted by relative path, index = position in that order, label = index of the top-level class
folder among the sorted folder names, unless the source holds a dataset.json with "labels".
"""
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch.utils.data import Dataset

from dmf.data.errors import DataError


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in PIL.Image.registered_extensions()


@dataclass
class ImageListing:
    source: str
    relpaths: list[str]
    labels: np.ndarray  # int64, one per relpath
    classes: list[str]  # class names, index = label
    keys: np.ndarray | None = None  # output number of each entry (file / sample name); default 0..N-1

    def __post_init__(self):
        if self.keys is None:
            self.keys = np.arange(len(self.relpaths))

    def __len__(self) -> int:
        return len(self.relpaths)

    def class_counts(self, indices=None) -> np.ndarray:
        labels = self.labels if indices is None else self.labels[np.asarray(indices, dtype=np.int64)]
        return np.bincount(labels, minlength=len(self.classes))

    def digest(self) -> str:
        """Fingerprint of (relpath, label) pairs: a resumed run must see the very same input."""
        h = hashlib.sha1()
        for rel, lab in zip(self.relpaths, self.labels.tolist()):
            h.update(f"{rel}\t{lab}\n".encode())
        return h.hexdigest()


def _walk_folder(root: Path) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        found += [name if rel == "." else f"{rel}/{name}" for name in files]
    return found


def _labels_from_json(text: bytes, relpaths: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    table = json.loads(text).get("labels")
    if table is None:
        raise ValueError(f"{where}: dataset.json has labels=null; class-conditional training needs labels")
    table = dict(table)
    missing = [r for r in relpaths if r not in table]
    if missing:
        raise ValueError(f"{where}: dataset.json has no label for {len(missing)} image(s), e.g. {missing[0]!r}")
    labels = np.array([int(table[r]) for r in relpaths], dtype=np.int64)
    classes = [str(i) for i in range(int(labels.max()) + 1)] if len(labels) else []
    return labels, classes


def _labels_from_folders(relpaths: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    """Class = first folder below the longest common folder prefix (so a zip's wrapping folder is ignored)."""
    parts = [r.split("/") for r in relpaths]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    if all(len(p) == common + 1 for p in parts):  # a flat folder: one class
        return np.zeros(len(relpaths), dtype=np.int64), [""]
    flat = [r for r, p in zip(relpaths, parts) if len(p) == common + 1]
    if flat:
        raise ValueError(f"{where}: image {flat[0]!r} sits beside the class folders, not inside one; expected "
                         f"<class>/<image> (ImageNet train layout) or a dataset.json with labels")
    names = [p[common] for p in parts]
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in names], dtype=np.int64), classes


def list_images(source: str | os.PathLike, limit: int | None = None) -> ImageListing:
    """All images under a folder or in a zip, sorted, with labels. `limit` keeps the first N (smoke runs)."""
    src = Path(source).expanduser()
    if src.is_dir():
        names = _walk_folder(src)
        meta = (src / "dataset.json").read_bytes() if (src / "dataset.json").is_file() else None
    elif src.is_file() and zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            meta = zf.read("dataset.json") if "dataset.json" in names else None
    elif src.exists():
        raise ValueError(f"preprocess input {src} is neither a folder nor a zip archive")
    else:
        raise FileNotFoundError(f"preprocess input {src} does not exist (set preprocess.input=<folder or zip>)")
    relpaths = sorted(n for n in names if _is_image(n))
    if not relpaths:
        raise ValueError(f"no images found in {src} (looked for {sorted(PIL.Image.registered_extensions())[:6]}...)")
    labels, classes = (_labels_from_json(meta, relpaths, str(src)) if meta is not None
                       else _labels_from_folders(relpaths, str(src)))
    if limit is not None:
        relpaths, labels = relpaths[:limit], labels[:limit]
    return ImageListing(str(src.resolve()), relpaths, labels, classes)


def center_crop_adm(image: PIL.Image.Image, size: int) -> np.ndarray:
    """ADM / "center-crop-dhariwal": halve with BOX while >= 2x, BICUBIC so the short side is `size`, crop."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=PIL.Image.Resampling.BOX)
    ratio = size / min(image.size)
    image = image.resize(tuple(round(s * ratio) for s in image.size), resample=PIL.Image.Resampling.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def png_bytes(image: torch.Tensor) -> bytes:
    """uint8 (3, H, W) -> an uncompressed PNG, as the REPA/EDM2 dataset tool stores its crops (fast to decode)."""
    buf = io.BytesIO()
    PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="png", compress_level=0, optimize=False)
    return buf.getvalue()


def decode_image(data: bytes, name: str) -> torch.Tensor:
    """A stored crop -> uint8 (3, H, W); any failure is a DataError naming `name`."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            arr = np.asarray(image.convert("RGB"))
    except Exception as err:
        raise DataError(f"{name}: cannot decode the image ({type(err).__name__}: {err}); the file is corrupt or "
                        f"truncated: re-run preprocessing for it, or set data.on_error=skip") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class CroppedImages(Dataset):
    """Item i of `indices` -> (global index, uint8 (3, R, R), error message or "", PNG bytes of the crop or None).

    A decode failure is returned, not raised, so the caller applies the on_error policy with the file
    name, and one bad JPEG cannot kill a DataLoader worker (and the whole run) without saying which.
    The PNG (with `png`) is encoded here, in the DataLoader workers, not in the process feeding the VAE.
    """

    def __init__(self, listing: ImageListing, resolution: int, indices, png: bool = False):
        self.listing = listing
        self.resolution = int(resolution)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.png = bool(png)
        self._zip = None
        self._zip_pid = None

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self, rel: str):
        src = self.listing.source
        if os.path.isdir(src):
            return open(os.path.join(src, rel), "rb")
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per worker process
            self._zip, self._zip_pid = zipfile.ZipFile(src), os.getpid()
        return io.BytesIO(self._zip.read(rel))

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        rel = self.listing.relpaths[index]
        try:
            with self._open(rel) as f:
                image = PIL.Image.open(f)
                image = image.convert("RGB")
            crop = torch.from_numpy(np.array(center_crop_adm(image, self.resolution))).permute(2, 0, 1)
            return index, crop, "", png_bytes(crop) if self.png else None
        except Exception as err:  # any decode failure: reported with the file name by the caller
            blank = torch.zeros(3, self.resolution, self.resolution, dtype=torch.uint8)
            return index, blank, f"{rel}: cannot decode the image ({type(err).__name__}: {err})", None

    def __getstate__(self):  # zip handles do not survive pickling into workers
        return {**self.__dict__, "_zip": None, "_zip_pid": None}
