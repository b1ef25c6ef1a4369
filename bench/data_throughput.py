"""Latents/s delivered to the training loop: the webdataset ShardDataModule vs the .npy folder
(LatentFolderDataModule), both through their real DataLoaders (posterior sampling per fetch included).

Writes N random moments at ImageNet shapes ((8, 32, 32) float32 at 256, 32 KB per sample) into both
layouts (the .npy folder first, then packed into shards by the real preprocessing code), then times
full epochs: median over runs, after one warm-up batch per epoch (worker start-up, shuffle-buffer fill).
Files sit in the page cache after writing, so this measures the CPU side of the pipeline; a cold
network file system adds its own read latency (which favours shards: sequential 32 MB reads).

    PYTHONPATH=. .venv/bin/python bench/data_throughput.py --out bench/results/data_cpu.md
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dmf.data import layout as L
from dmf.data.datamodules import LatentFolderDataModule, ShardDataModule
from dmf.data.preprocess import preprocess


def write_npy_folder(root: Path, n: int, latent: int, num_classes: int = 1000) -> None:
    rng = np.random.default_rng(0)
    directory = root / L.NPY_DIR
    labels = []
    for i in range(n):
        rel = L.npy_relpath(i)
        moments = np.concatenate([rng.standard_normal((4, latent, latent), dtype=np.float32) * 5,
                                  np.full((4, latent, latent), 0.1, np.float32)])
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(directory / rel, moments)
        labels.append([rel, int(i % num_classes)])
    (directory / "dataset.json").write_text(json.dumps({"labels": labels}))


def time_epochs(make_module, runs: int) -> tuple[float, int]:
    """Median latents/s over `runs` epochs (a fresh DataLoader each, as after a restart)."""
    rates, count = [], 0
    for _ in range(runs):
        module = make_module()
        loader = module.train_dataloader()
        it = iter(loader)
        next(it)  # warm-up: workers started, buffers filled
        start, count = time.perf_counter(), 0
        for x, _y in it:
            count += x.shape[0]
        rates.append(count / (time.perf_counter() - start))
        del it, loader
    return statistics.median(rates), count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-samples", type=int, default=10000)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the data (default: a temp dir)")
    ap.add_argument("--out", default=None, help="append a markdown table here")
    a = ap.parse_args()
    torch.set_num_threads(1)  # the loader workers do the work; keep the main process from competing
    latent = a.resolution // 8
    common = dict(batch_size=a.batch_size, num_workers=a.workers, seed=0, latent_channels=4, latent_size=latent,
                  num_classes=1000, persistent_workers=False)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_npy_folder(root, a.num_samples, latent)
        preprocess(root, root, layout="wds", shard_size=1000, num_workers=a.workers, progress=False, images=False)
        prep_s = time.perf_counter() - t0
        results = {
            "webdataset shards (ShardDataModule)": time_epochs(lambda: ShardDataModule(root=str(root), **common),
                                                               a.runs),
            ".npy folder (LatentFolderDataModule)": time_epochs(
                lambda: LatentFolderDataModule(root=str(root), **common), a.runs),
        }
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0]
    lines = [
        f"### {a.resolution}x{a.resolution} latents ({8}x{latent}x{latent} float32 moments), {a.num_samples} samples, "
        f"batch {a.batch_size}, {a.workers} workers",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), no GPU, torch {torch.__version__}; load average at the end "
        f"{load:.1f} (other jobs share these cores). Data written in {prep_s:.0f} s and in the page cache. "
        f"Median of {a.runs} epochs, first batch of each excluded.",
        "",
        "| pipeline | latents/s | vs one H100 (~150 img/s) |",
        "|---|---|---|",
    ]
    for name, (rate, _) in results.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / 150:.0f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
