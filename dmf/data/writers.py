"""Preprocessing outputs, one unit ("chunk") at a time: a .npy folder (and its images/ folder) or a .tar shard.

A chunk is committed in two atomic steps: its data (folders or a tar, built under
<out>/.preprocess/<layout>/tmp/ and renamed into place), then its record
(<out>/.preprocess/<layout>/done/<chunk>.json). A chunk counts as finished only when both exist, so a
run killed at any point resumes by redoing just the chunks that lack a record.
"""
import os
import shutil
from pathlib import Path

import numpy as np

from dmf.data import layout as L


class ChunkWriter:
    layout = ""

    def __init__(self, out: Path, keys: np.ndarray, labels: np.ndarray, part: int = 0, images: bool = False):
        self.out = Path(out)
        self.keys = keys  # key (file / sample number) of each listing entry
        self.labels = labels
        self.images = bool(images)  # each sample's PNG is written beside its moments
        self.state = self.out / L.STATE_DIR / self.layout
        self.tmp = self.state / "tmp" / f"part{part}"  # per part: parallel parts never share temp space
        self.chunks: list[np.ndarray] = []

    def record_path(self, c: int) -> Path:
        return self.state / "done" / f"{c:06d}.json"

    def output_path(self, c: int) -> Path:
        raise NotImplementedError

    def output_paths(self, c: int) -> list[Path]:
        return [self.output_path(c)]

    def final_dirs(self) -> list[Path]:
        """The folders this layout writes into (besides its state)."""
        raise NotImplementedError

    def is_done(self, c: int) -> bool:
        return self.record_path(c).is_file() and all(p.exists() for p in self.output_paths(c))

    def clean_tmp(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self, c: int, moments: dict, skipped: list[dict], pngs: dict) -> None:
        """moments / pngs: listing index -> float32 array / PNG bytes, for every index of chunk c not in `skipped`
        (pngs only when the writer stores images)."""
        if self.images and pngs.keys() != moments.keys():
            raise RuntimeError(f"{self.output_path(c)}: {len(moments)} moments but {len(pngs)} images to write")
        self.record_path(c).unlink(missing_ok=True)
        self._write(c, moments, pngs)
        shapes = {tuple(m.shape) for m in moments.values()}
        L.write_json_atomic(self.record_path(c), {
            "count": len(moments), "shape": list(shapes.pop()) if shapes else None, "skipped": skipped})

    def _write(self, c: int, moments: dict, pngs: dict) -> None:
        raise NotImplementedError

    def found_keys(self, c: int) -> set[str]:
        """Keys actually present in chunk c's output (read back from disk for the final check)."""
        raise NotImplementedError

    def key_name(self, index: int) -> str:
        return L.sample_key(int(self.keys[index]))


class NpyFolderWriter(ChunkWriter):
    """The reference layout: chunk c = folder vae-sd/<c:05d> with `folder_size` consecutive images, and with
    `images` the folder images/<c:05d> of their PNGs (the REPA authors' layout)."""

    layout = "npy"

    def __init__(self, out, keys, labels, folder_size: int = 1000, part: int = 0, images: bool = False):
        super().__init__(out, keys, labels, part, images)
        self.folder_size = int(folder_size)
        if len(keys) and not np.array_equal(keys, np.arange(len(keys))):
            raise ValueError("the .npy layout numbers files by listing position; keys must be 0..N-1")
        n = len(keys)
        self.chunks = [np.arange(s, min(s + folder_size, n)) for s in range(0, n, folder_size)]

    def output_path(self, c: int) -> Path:
        return self.out / L.NPY_DIR / f"{c:05d}"

    def image_path(self, c: int) -> Path:
        return self.out / L.IMAGE_DIR / f"{c:05d}"

    def output_paths(self, c):
        return [self.output_path(c), self.image_path(c)] if self.images else [self.output_path(c)]

    def final_dirs(self):
        return [self.out / L.NPY_DIR, self.out / L.IMAGE_DIR] if self.images else [self.out / L.NPY_DIR]

    def _write(self, c, moments, pngs):
        # images first: a chunk whose latents are in place always has its images too
        if self.images:
            self._write_folder(self.image_path(c), {L.image_relpath(i, self.folder_size): pngs[i] for i in pngs})
        self._write_folder(self.output_path(c), {L.npy_relpath(i, self.folder_size): L.npy_bytes(moments[i])
                                                 for i in moments})

    def _write_folder(self, final: Path, files: dict[str, bytes]) -> None:
        tmp = self.tmp / final.parent.name / final.name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for rel in sorted(files):
            (tmp / rel.split("/")[1]).write_bytes(files[rel])
        if final.exists():  # data of a run killed after its rename but before its record: same content
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def found_keys(self, c):
        names = [n for n in os.listdir(self.output_path(c)) if n.endswith(".npy")]
        keys = {n[len("img-mean-std-"):-len(".npy")] for n in names}
        if self.images:  # a sample counts only with both its latent and its image
            keys &= {n[len("img"):-len(".png")] for n in os.listdir(self.image_path(c)) if n.endswith(".png")}
        return keys

    def finalize(self, kept: list[int], shape) -> None:
        if self.images:  # before vae-sd/dataset.json, whose presence marks the latent folder complete
            labels = [[L.image_relpath(i, self.folder_size), int(self.labels[i])] for i in kept]
            L.write_json_atomic(self.out / L.IMAGE_DIR / "dataset.json", {"labels": labels})
        labels = [[L.npy_relpath(i, self.folder_size), int(self.labels[i])] for i in kept]
        L.write_json_atomic(self.out / L.NPY_DIR / "dataset.json", {"labels": labels})


class ShardWriter(ChunkWriter):
    """Webdataset shards: chunk j = wds/latents-<j:06d>.tar with `shard_size` samples in a seeded random
    order, so that every shard mixes classes (sorted order would put one class per shard)."""

    layout = "wds"

    def __init__(self, out, keys, labels, shard_size: int = 1000, seed: int = 0, part: int = 0,
                 images: bool = False):
        super().__init__(out, keys, labels, part, images)
        perm = np.random.default_rng(seed).permutation(len(keys))
        self.chunks = [perm[s:s + shard_size] for s in range(0, len(keys), shard_size)]

    def output_path(self, c):
        return self.out / L.WDS_DIR / L.shard_name(c)

    def final_dirs(self):
        return [self.out / L.WDS_DIR]

    def _write(self, c, moments, pngs):
        order = [int(i) for i in self.chunks[c] if int(i) in moments]
        L.write_shard(self.output_path(c), ((int(self.keys[i]), moments[i], self.labels[i], pngs.get(i))
                                            for i in order))

    def found_keys(self, c):
        return set(L.shard_keys(self.output_path(c), self.images))

    def finalize(self, kept: list[int], shape) -> None:
        kept_set = set(kept)
        shards = [{"file": L.shard_name(c), "count": sum(int(i) in kept_set for i in chunk)}
                  for c, chunk in enumerate(self.chunks)]
        counts = np.bincount(self.labels[np.asarray(kept, dtype=np.int64)], minlength=int(self.labels.max()) + 1)
        L.write_json_atomic(self.out / L.WDS_DIR / L.MANIFEST, {
            "format": L.MANIFEST_FORMAT, "num_samples": len(kept), "num_classes": len(counts),
            "class_counts": counts.tolist(), "moments_shape": shape, "images": self.images, "shards": shards})
