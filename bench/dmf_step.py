"""Time one DMF training step (guidance, flow-matching pass, JVP pass, backward, AdamW) and one-step sampling,
for several settings in ONE run against the straightforward baseline (math attention, eager), so that the
ratio means something on a noisy machine.

    PYTHONPATH=. python bench/dmf_step.py --model DMFT-XL/2 --resolution 256 --batch 32 \
        --configs math:eager,auto:eager,auto:compile --profile auto:compile        # on a GPU (bf16 autocast)
    PYTHONPATH=. python bench/dmf_step.py --model DMFT-T/2 --resolution 8 --downsample 1 --channels 1 --batch 64   # on a CPU

A config is `<attention.backend>:<eager|compile>[:<objective.jvp>]` (joint by default; split: a gradient-free JVP
plus a plain forward for u, dmf/objectives/dmf_loss.py). `auto` runs SDPA/flash on every pass without tangents and,
on CUDA, the fused JVP kernel (dmf/kernels) on the JVP pass (the math kernel on a CPU); `math` runs the math
kernel everywhere. `compile` is model.compile=true (dmf.models.compile: the tangent-free passes compiled).
Columns: median step time, img/s, peak memory, achieved TFLOP/s (the step's FLOPs counted once with
torch's FlopCounterMode on the math baseline, per image, times img/s), speed-up over the first config,
compile time (first step minus the median step), 1-NFE sampling img/s (network only). `--profile CONFIG`
adds where that config's step time goes (torch.profiler, device time by kernel family and top kernels).
"""
import argparse
import gc
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dmf.models import build_model
from dmf.models.attention import set_attention_backend
from dmf.models.compile import compile_network
from dmf.objectives import DMFLoss, LogitNormalTime, ModelGuidance
from dmf.sampling import build_sampler
from bench.machine import machine_name


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, warmup: int, iters: int) -> tuple[list[float], list[float]]:
    """(warm-up times, timed times), each call synchronised."""
    out = ([], [])
    for i in range(warmup + iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out[i >= warmup].append(time.perf_counter() - t0)
    return out


class Setup:
    """One network + optimiser + objective + fixed batch for a config; `.step()` is one training step."""

    def __init__(self, args, backend: str, compiled: bool, device, batch: int, log=print, jvp: str = "joint"):
        self.latent = args.resolution // args.downsample
        self.device, self.batch, self.args = device, batch, args
        self.net = build_model(args.model, input_size=self.latent, in_channels=args.channels,
                               num_classes=args.num_classes, dmf_depth=args.dmf_depth, qk_norm=args.qk_norm,
                               **({"depth": args.depth} if args.depth else {})).to(device)
        set_attention_backend(self.net, backend)
        for p in self.net.parameters():  # the zero-initialised output layers would make the step unrealistically cheap
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)
        if compiled:
            compile_network(self.net, log=log)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, betas=(0.9, 0.95))
        self.loss_fn = DMFLoss(LogitNormalTime(), ModelGuidance(0.6, 0.0, 0.7), cfg_prob=0.1, jvp=jvp)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, args.channels, self.latent, self.latent, generator=gen).to(device)
        self.y = torch.randint(0, args.num_classes, (batch,), generator=gen).to(device)
        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step(self):
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.device.type == "cuda"):
            loss, _ = self.loss_fn(self.net, self.x, self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()

    def sample_rate(self, n: int, iters: int) -> float:
        sampler = build_sampler("euler", steps=1)
        self.net.eval()
        noise = torch.randn(n, self.args.channels, self.latent, self.latent, device=self.device)
        ys = torch.randint(0, self.args.num_classes, (n,), device=self.device)

        def sample():
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.device.type == "cuda"):
                sampler(self.net, noise, ys)

        _, times = timed(sample, self.device, 2, iters)
        self.net.train()
        return n / statistics.median(times)


def flops_per_image(args, device) -> float:
    """FLOPs of one DMF step per image, counted on the math-attention eager step (the same work for every config;
    fused kernels are invisible to the counter). Counted at batch 2: FLOPs are linear in the batch."""
    setup = Setup(args, "math", False, device, 2)
    torch.manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        setup.step()
    del setup
    free(device)
    return counter.get_total_flops() / 2


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


FAMILIES = [  # kernel name fragments -> family, first match wins
    ("fused JVP attention", ("_tangent_kernel", "_forward_kernel")),
    ("attention (flash/SDPA)", ("flash", "fmha", "attention", "sdpa")),
    ("softmax", ("softmax",)),
    ("GEMM", ("gemm", "cutlass", "nvjet", "sm90_xmma", "matmul", "addmm", "mm", "bmm", "linear")),
    ("norm", ("norm",)),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
]


def family(name: str) -> str:
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "elementwise / other"


def profile_summary(setup, device, steps: int = 2, top: int = 8) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            setup.step()
        sync(device)
    events = prof.key_averages()
    if device.type == "cuda":  # device kernels only (their self time is the GPU time)
        rows = [(e.key, e.self_device_time_total) for e in events if e.self_device_time_total > 0
                and e.device_type == torch.autograd.DeviceType.CUDA]
    else:  # CPU: the aten ops' self time
        rows = [(e.key, e.self_cpu_time_total) for e in events if e.key.startswith("aten::")]
    total = sum(t for _, t in rows) or 1.0
    by_family: dict[str, float] = {}
    for name, t in rows:
        by_family[family(name)] = by_family.get(family(name), 0.0) + t
    lines = [f"{'device' if device.type == 'cuda' else 'CPU'} time per step {total / steps / 1e3:.1f} ms: " + ", ".join(
        f"{fam} {100 * t / total:.0f}%" for fam, t in sorted(by_family.items(), key=lambda kv: -kv[1]))]
    for name, t in sorted(rows, key=lambda r: -r[1])[:top]:
        lines.append(f"  {100 * t / total:5.1f}%  {t / steps / 1e3:8.2f} ms  {name[:110]}")
    return lines


def build(args, config: str, device) -> tuple[Setup, list[str]]:
    backend, mode, *jvp = config.split(":")
    if mode not in ("eager", "compile") or jvp not in ([], ["joint"], ["split"]):
        raise SystemExit(f"config {config!r}: expected backend:eager|compile[:joint|split] (objective.jvp)")
    compile_log = []
    return Setup(args, backend, mode == "compile", device, args.batch, log=compile_log.append,
                 jvp=jvp[0] if jvp else "joint"), compile_log


def finish(args, config, setup, compile_log, warm, times, device, flops_img, profile) -> tuple[dict, list[str]]:
    """The row of one config from its step times; then its profile and sampling rate."""
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    prof = profile_summary(setup, device) if profile else []
    sample = setup.sample_rate(args.sample_batch, args.iters)
    r = {"config": config, "batch": setup.batch, "step_s": med, "img_s": setup.batch / med, "peak_gib": peak,
         "tflops": flops_img * setup.batch / med / 1e12, "first_step_s": warm[0] if warm else None,
         "compile_s": (warm[0] - med) if (warm and config.endswith(":compile")) else None, "sample_img_s": sample,
         "compile_log": compile_log}
    return r, prof


def measure(args, configs, device, flops_img):
    """Yields (config, row or None if out of memory, profile lines). Sequential: one config at a time (GPU:
    each its own peak memory). Interleaved (--interleave, CPU): all built first, then timed step by step in
    turn, so that a shared machine's changing load hits every config alike."""
    profiled = set(args.profile.split(","))
    if not args.interleave:
        for config in configs:
            try:
                setup, log = build(args, config, device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                torch.manual_seed(0)
                warm, times = timed(setup.step, device, args.warmup, args.iters)
                yield (config, *finish(args, config, setup, log, warm, times, device, flops_img, config in profiled))
            except torch.cuda.OutOfMemoryError:
                yield config, None, []
            setup = None
            free(device)
        return
    built = {c: build(args, c, device) for c in configs}
    warm = {c: timed(built[c][0].step, device, args.warmup, 0)[0] for c in configs}
    times = {c: [] for c in configs}
    for _ in range(args.iters):
        for c in configs:
            times[c] += timed(built[c][0].step, device, 0, 1)[1]
    for c in configs:
        yield (c, *finish(args, c, *built[c], warm[c], times[c], device, flops_img, c in profiled))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="DMFT-XL/2")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--downsample", type=int, default=8)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dmf-depth", type=int, default=20)
    p.add_argument("--depth", type=int, default=None, help="override the size's depth (small CPU runs)")
    p.add_argument("--qk-norm", action="store_true")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sample-batch", type=int, default=256)
    p.add_argument("--configs", default="math:eager,auto:eager,auto:compile",
                   help="comma list of <attention backend>:<eager|compile>[:joint|split]; the first is the baseline")
    p.add_argument("--profile", default="", help="comma list of configs to profile")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", help="also append the table to this markdown file")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--interleave", action="store_true",
                   help="time the configs step by step in turn (shared CPUs; holds every config in memory at once)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops_img = flops_per_image(args, device)
    head = (f"\n### {args.model} at {args.resolution}{' (qk-norm)' if args.qk_norm else ''}, batch {args.batch}, "
            f"{machine_name(device)}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n\n"
            f"DMF step: {flops_img / 1e9:.4g} GFLOP per image (FlopCounterMode, math attention). "
            f"Median of {args.iters} steps after {args.warmup} warm-up steps"
            f"{', configs interleaved step by step' if args.interleave else ''}; "
            f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}.\n")
    lines = [head, "| config | batch | DMF step (median) | img/s | peak GiB | TFLOP/s | vs first | compile s "
             "| 1-NFE img/s |", "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    rows, profiles, baseline_s = [], [], None
    for config, r, prof in measure(args, args.configs.split(","), device, flops_img):
        if r is None:
            row = f"| {config} | {args.batch} | out of memory | | | | | | |"
            r = {"config": config, "batch": args.batch, "oom": True}
        else:
            baseline_s = baseline_s or r["step_s"]
            r["speedup"] = baseline_s / r["step_s"]
            comp = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "-"
            row = (f"| {config} | {r['batch']} | {r['step_s']:.3f} s | {r['img_s']:.1f} | {r['peak_gib']:.1f} | "
                   f"{r['tflops']:.3g} | {r['speedup']:.2f}x | {comp} | {r['sample_img_s']:.0f} |")
            if prof:
                profiles += [f"\nWhere the step time goes ({config}):\n", "```", *prof, "```"]
        print(row, flush=True)
        lines.append(row)
        rows.append(r)
    print("\n".join(profiles), flush=True)
    lines += profiles
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": machine_name(device), "flops_per_image": flops_img, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
