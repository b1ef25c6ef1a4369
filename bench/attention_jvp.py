"""Attention with a JVP, the DMF pattern: o, o' = jvp(attn, (q, k, v), (q', k', v')), then backward of the
primal o only (the target built from o' is stop-gradient). Fused JVP kernel (dmf/kernels) vs math attention,
in one run, plus a flash/SDPA forward alone for scale. Also the error of each against float64 math.

    PYTHONPATH=. python bench/attention_jvp.py --lengths 256,1024 --batch 16 --heads 16 --head-dim 72 --out bench/results/attention_jvp_gpu.md

On a CPU the fused kernel runs in Triton's interpreter: use tiny shapes, for a smoke test only
(`--lengths 37 --batch 1 --heads 2 --iters 2`); its times mean nothing.
"""
import os

import torch

if not torch.cuda.is_available():  # the interpreter must be chosen before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch.nn.functional as F  # noqa: E402
from torch.func import jvp  # noqa: E402

from bench.machine import machine_name  # noqa: E402
from dmf.models.attention import get_backend  # noqa: E402


def timed(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def math64(q, k, v):
    q, k, v = q.double(), k.double(), v.double()
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def rel(a, b) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def bench_length(args, length: int, device, dtype) -> list[str]:
    shape = (args.batch, args.heads, length, args.head_dim)
    gen = torch.Generator().manual_seed(0)
    q, k, v, q_t, k_t, v_t = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(6))
    grad = torch.randn(shape, generator=gen).to(device, dtype)
    n_ref = min(2, args.batch)  # float64 reference on the first items only (memory)
    ref, ref_t = jvp(math64, tuple(t[:n_ref] for t in (q, k, v)), tuple(t[:n_ref] for t in (q_t, k_t, v_t)))
    rows = []
    for name in args.backends.split(","):
        fn = get_backend(name).fn
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]

        def fwd_jvp():
            with torch.no_grad():
                return jvp(fn, (q, k, v), (q_t, k_t, v_t))

        def fwd_jvp_bwd():
            o, _ = jvp(fn, tuple(leaves), (q_t, k_t, v_t))
            o.backward(grad)

        try:
            o, o_t = fwd_jvp()
            err = f"{rel(o[:n_ref], ref):.1e} / {rel(o_t[:n_ref], ref_t):.1e}"
            del o, o_t
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t1 = timed(fwd_jvp, device, args.warmup, args.iters)
            t2 = timed(fwd_jvp_bwd, device, args.warmup, args.iters)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            rows.append((name, t1, t2, peak, err))
        except torch.cuda.OutOfMemoryError:
            rows.append((name, None, None, None, "out of memory"))
        leaves = None  # frees them before the next backend (the closure above reads the same cell)
        torch.cuda.empty_cache() if device.type == "cuda" else None
    flash = timed(lambda: F.scaled_dot_product_attention(q, k, v), device, args.warmup, args.iters)
    base = rows[0][1]
    lines = []
    for name, t1, t2, peak, err in rows:
        if t1 is None:
            lines.append(f"| {length} | {name} | out of memory | | | | |")
            continue
        lines.append(f"| {length} | {name} | {t1 * 1e3:.3f} | {base / t1:.1f}x | {t2 * 1e3:.3f} | {peak:.2f} | {err} |")
    lines.append(f"| {length} | sdpa forward only | {flash * 1e3:.3f} | | | | |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="256,1024")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=72)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--backends", default="math,fused_jvp", help="the first is the baseline of the speed-up column")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    name = machine_name(device) + ("" if device.type == "cuda" else " (Triton interpreter: times mean nothing)")
    lines = [f"\n### Attention + JVP, B={args.batch}, H={args.heads}, d={args.head_dim}, {str(dtype)[6:]}, {name}, "
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n",
             "| L | attention | fwd+JVP ms | speed-up | fwd+JVP+bwd ms | peak GiB | rel. error o / o' vs float64 |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for length in (int(x) for x in args.lengths.split(",")):
        rows = bench_length(args, length, device, dtype)
        print("\n".join(rows), flush=True)
        lines += rows
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
