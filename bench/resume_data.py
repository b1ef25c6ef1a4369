"""What exact data resumes cost on the CPU: (1) the per-sample generator that seeds each sample's flip and posterior
noise (dmf.data.sample_draws) next to the rest of a sample's fetch, and (2) a webdataset shard stream resumed late in
its epoch, whose skipped samples are read and shuffled but not decoded (dmf.data.shards).

Moments at ImageNet 256 shapes ((8, 32, 32) float32, 32 KB); shards of 1,000 written to a temp dir (page cache).
One process, no DataLoader workers (the cost per (rank, worker) stream). Medians over repeats.

    PYTHONPATH=. .venv/bin/python bench/resume_data.py --out bench/results/resume_data_cpu.md
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import machine_name
from dmf.data import layout as L
from dmf.data.latent import load_npy, sample_latent
from dmf.data.sample_draws import draw_latent, sample_generator
from dmf.data.shards import ShardDataset


def per_call_us(fn, n: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def write_shards(directory: Path, num_shards: int, per_shard: int, latent: int) -> list[str]:
    rng = np.random.default_rng(0)
    urls, k = [], 0
    for s in range(num_shards):
        samples = []
        for _ in range(per_shard):
            moments = np.concatenate([rng.standard_normal((4, latent, latent), dtype=np.float32),
                                      np.full((4, latent, latent), 0.1, np.float32)])
            samples.append((k, moments, k % 1000))
            k += 1
        L.write_shard(directory / L.shard_name(s), samples)
        urls.append(str(directory / L.shard_name(s)))
    return urls


def stream_seconds(urls, num_samples: int, done_samples: int, batch: int, repeats: int) -> tuple[float, float]:
    """(seconds to the resumed pass's first batch, seconds for the whole resumed pass)."""
    first, whole = [], []
    for _ in range(repeats):
        ds = ShardDataset(urls, num_samples=num_samples, batch_size=batch, seed=0, resampled=True, flip=True)
        ds.skip_once(done_samples)
        start = time.perf_counter()
        it = iter(torch.utils.data.DataLoader(ds, batch_size=batch, drop_last=True))
        next(it)
        first.append(time.perf_counter() - start)
        for _ in it:
            pass
        whole.append(time.perf_counter() - start)
    return statistics.median(first), statistics.median(whole)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-samples", type=int, default=20000, help="epoch length of the stream")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    latent, n = 32, 2000
    moments = np.concatenate([np.ones((4, latent, latent), np.float32), np.full((4, latent, latent), 0.1, np.float32)])
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "m.npy", moments)
        path = str(Path(tmp) / "m.npy")
        rows = {
            "sample_generator(seed, epoch, index)": per_call_us(lambda i: sample_generator(0, 1, i), n),
            "flip + posterior draw from it (draw_latent)": per_call_us(
                lambda i: draw_latent(moments, 0.18215, True, sample_generator(0, 1, i)), n),
            "posterior draw from torch's global RNG (before)": per_call_us(
                lambda i: sample_latent(moments, 0.18215, flip=bool(torch.rand(()) < 0.5)), n),
            "read + parse one .npy file (load_npy)": per_call_us(lambda i: load_npy(path, path), n),
        }
        urls = write_shards(Path(tmp), args.num_samples // 1000 or 1, 1000, latent)
        late = args.num_samples - 10 * args.batch_size  # resumed with 10 batches of the epoch left
        full_first, full = stream_seconds(urls, args.num_samples, 0, args.batch_size, args.repeats)
        late_first, late_whole = stream_seconds(urls, args.num_samples, late, args.batch_size, args.repeats)
    load = os.getloadavg()[0]
    lines = [
        "# Exact data resumes: per-sample generators and a late shard resume (CPU)",
        "",
        f"`bench/resume_data.py`; machine: {machine_name(torch.device('cpu'))} ({os.cpu_count()} cores), torch "
        f"{torch.__version__}, load average {load:.1f} at the end (other jobs share these cores). Moments "
        f"(8, {latent}, {latent}) float32 (ImageNet 256), one process, no workers; medians of repeats.",
        "",
        "| per sample | µs |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in rows.items()],
        "",
        f"One shard stream of {args.num_samples} samples (shards of 1,000, page cache), batches of {args.batch_size}:",
        "",
        "| pass | first batch (s) | whole pass (s) |",
        "|---|---|---|",
        f"| from the epoch's start | {full_first:.3f} | {full:.2f} |",
        f"| resumed with 10 batches left ({late} samples skipped) | {late_first:.3f} | {late_whole:.3f} |",
        "",
        f"Skip cost: {late_first / late * 1e6:.1f} µs per skipped sample (read, shuffled, not decoded), vs "
        f"{full / args.num_samples * 1e6:.1f} µs per sample of a full pass.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
