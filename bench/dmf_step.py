"""Time one DMF training step (forward, JVP, backward, AdamW) and one-step sampling.

    python bench/dmf_step.py --model DMFT-XL/2 --resolution 256 --batch 32      # on a GPU (bf16 autocast)
    python bench/dmf_step.py --model DMFT-T/2 --resolution 8 --channels 1 --batch 64   # on a CPU

Prints one markdown row per attention setting: median step time, images/s, peak memory. `auto` runs SDPA on
every pass without tangents and the math kernel on the JVP pass; `math` runs the math kernel everywhere.
"""
import argparse
import statistics
import time

import torch

from dmf.models import build_model
from dmf.models.attention import set_attention_backend
from dmf.objectives import DMFLoss, LogitNormalTime, ModelGuidance
from dmf.sampling import build_sampler


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_step(args, backend: str, device, batch: int) -> dict:
    latent = args.resolution // args.downsample
    net = build_model(args.model, input_size=latent, in_channels=args.channels, num_classes=args.num_classes,
                      dmf_depth=args.dmf_depth, qk_norm=args.qk_norm).to(device)
    set_attention_backend(net, backend)
    for p in net.parameters():  # the zero-initialised output layers would make the step unrealistically cheap
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.95))
    loss_fn = DMFLoss(LogitNormalTime(), ModelGuidance(0.6, 0.0, 0.7), cfg_prob=0.1)
    x = torch.randn(batch, args.channels, latent, latent, device=device)
    y = torch.randint(0, args.num_classes, (batch,), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            loss, _ = loss_fn(net, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = timed(step, device, args.warmup, args.iters)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")

    sampler = build_sampler("euler", steps=1)
    net.eval()
    n = args.sample_batch
    noise = torch.randn(n, args.channels, latent, latent, device=device)
    ys = torch.randint(0, args.num_classes, (n,), device=device)

    def sample():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            sampler(net, noise, ys)

    s_med = statistics.median(timed(sample, device, 2, args.iters))
    del net, opt
    return {"backend": backend, "batch": batch, "step_s": med, "img_s": batch / med, "peak_gib": peak,
            "sample_img_s": n / s_med}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="DMFT-XL/2")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--downsample", type=int, default=8)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dmf-depth", type=int, default=20)
    p.add_argument("--qk-norm", action="store_true")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sample-batch", type=int, default=256)
    p.add_argument("--backends", default="auto,math")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", help="also append the table to this markdown file")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"\n### {args.model} at {args.resolution}, {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n",
             "| attention | batch | DMF step (median) | img/s | peak GiB | 1-NFE sampling img/s |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for backend in args.backends.split(","):
        try:
            r = bench_step(args, backend, device, args.batch)
            row = (f"| {r['backend']} | {r['batch']} | {r['step_s']:.3f} s | {r['img_s']:.1f} | {r['peak_gib']:.1f} | "
                   f"{r['sample_img_s']:.0f} |")
        except torch.cuda.OutOfMemoryError:
            row = f"| {backend} | {args.batch} | out of memory | | | |"
            torch.cuda.empty_cache()
        print(row, flush=True)
        lines.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
