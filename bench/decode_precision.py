"""eval.decode_precision: SD-VAE decode in fp32 vs bf16 autocast on real decoder shapes: time per image and the
uint8 pixel difference, through dmf.eval.generation.loop.decode (the code path of mode=eval).

    PYTHONPATH=. python bench/decode_precision.py --out bench/results/decode_precision_gpu.md                # random weights
    PYTHONPATH=. python bench/decode_precision.py --vae-path /weights/sd-vae-ft-ema --out ...               # real weights

Latents: the VAE's own encoding of real photos (scikit-learn's sample images, 256x256 crops), so with real
weights the pixel difference is the one FID would see. With random weights (no download here) the images are
meaningless and the difference only bounds the arithmetic error of the bf16 convolutions.
"""
import argparse
import statistics
import time

import numpy as np
import torch

from dmf.eval.generation.loop import DECODE_PRECISIONS, decode
from bench.machine import machine_name
from dmf.eval.generation.images import to_uint8


def photo_crops(n: int, size: int) -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    photos = load_sample_images().images  # two 427x640 RGB photos
    crops = []
    for i in range(n):
        img = photos[i % 2]
        y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        crops.append(torch.from_numpy(img[y:y + size, x:x + size]).permute(2, 0, 1))
    return torch.stack(crops).float() / 127.5 - 1


def build_vae(path: str | None, device):
    if path:
        from dmf.data.vae import SDVAE

        return SDVAE(path=path).to(device), "real weights: " + path
    from diffusers import AutoencoderKL

    from bench.eval_throughput import SD_VAE_CONFIG

    ae = AutoencoderKL(**SD_VAE_CONFIG).to(device).eval()

    class Random:
        def encode_moments(self, x):
            dist = ae.encode(x).latent_dist
            return torch.cat([dist.mean, dist.std], 1)

        def decode(self, z):
            return ae.decode(z / 0.18215).sample.clamp(-1, 1)

    return Random(), "random weights (sd-vae architecture)"


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae-path")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out")
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae, what = build_vae(a.vae_path, device)
    images = photo_crops(a.batch, a.resolution).to(device)
    z = vae.encode_moments(images)[:, :4] * 0.18215  # posterior means, in model space
    out, times = {}, {}
    for name, dtype in DECODE_PRECISIONS.items():
        out[name] = to_uint8(decode(vae, z, dtype), "floor").int()
        runs = []
        for _ in range(a.iters):
            torch.cuda.synchronize() if device.type == "cuda" else None
            t0 = time.perf_counter()
            decode(vae, z, dtype)
            torch.cuda.synchronize() if device.type == "cuda" else None
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs) / a.batch
    diff = (out["fp32"] - out["bf16"]).abs().float()
    card = machine_name(device)
    lines = [f"\n### SD-VAE decode {a.resolution}px, batch {a.batch}, {card}, {what}, torch {torch.__version__}, "
             f"{time.strftime('%Y-%m-%d')}\n",
             "| decode | ms / image | img/s | uint8 diff vs fp32: mean / max / share > 2 levels |", "|---|---|---|---|",
             f"| fp32 | {times['fp32'] * 1e3:.2f} | {1 / times['fp32']:.0f} | - |",
             f"| bf16 | {times['bf16'] * 1e3:.2f} | {1 / times['bf16']:.0f} | {diff.mean():.3f} / {diff.max():.0f} / "
             f"{(diff > 2).float().mean() * 100:.2f} % |"]
    print("\n".join(lines))
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
