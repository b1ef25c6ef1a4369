"""Optional exports of generated images: one PNG per index (the layout of the reference generate.py, readable by
EDM2's calculate_metrics and our ImageFolder source) and an ADM-evaluator .npz (arr_0 uint8 NHWC, arr_1 labels).
Writers see each batch, are told when a chunk is complete (resume granularity) and finalise on the main rank."""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from dmf.core.files import atomic_path


class PngWriter:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def write(self, indices, images, labels):
        arr = images.permute(0, 2, 3, 1).numpy()
        for i, img in zip(indices.tolist(), arr):
            Image.fromarray(img).save(self.dir / f"{i:06d}.png")

    def end_chunk(self, chunk: int):
        pass

    def finalize(self, plan):
        pass


class NpzWriter:
    """Chunk parts under npz_parts/, assembled at the end into samples_<N>x<H>x<W>x3.npz without holding all
    images in memory (np.savez streams an open memmap)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.parts = self.dir / "npz_parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._buf = []

    def write(self, indices, images, labels):
        self._buf.append((indices.numpy(), images.permute(0, 2, 3, 1).numpy(), labels.numpy()))

    def end_chunk(self, chunk: int):
        idx, imgs, ys = (np.concatenate(a) for a in zip(*self._buf))
        self._buf = []
        with atomic_path(self.parts / f"chunk_{chunk:06d}.npz") as tmp:
            np.savez(tmp, indices=idx, images=imgs, labels=ys)

    def finalize(self, plan):
        parts = sorted(self.parts.glob("chunk_*[0-9].npz"))
        with np.load(parts[0]) as first:
            h, w, c = first["images"].shape[1:]
        out = self.dir / f"samples_{plan.num_samples}x{h}x{w}x{c}.npz"
        mm_path = self.dir / "npz_parts" / "all_images.u8"
        images = np.lib.format.open_memmap(mm_path, mode="w+", dtype=np.uint8, shape=(plan.num_samples, h, w, c))
        labels = np.zeros(plan.num_samples, np.int64)
        for p in parts:
            with np.load(p) as z:
                images[z["indices"]] = z["images"]
                labels[z["indices"]] = z["labels"]
        images.flush()
        with atomic_path(out) as tmp:
            np.savez(tmp, arr_0=images, arr_1=labels)
        del images
        shutil.rmtree(self.parts)
