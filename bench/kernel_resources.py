"""Shared memory per block of the fused JVP attention kernels, built for GPUs that are not here (Triton's compiler
and ptxas run on a CPU): every autotune block shape, per card, input dtype and head dim, and whether each card can
run at least one. A compile error or a kernel no card can hold shows here, not on a lent GPU's clock.

    PYTHONPATH=. python bench/kernel_resources.py                     # the full table (about 12 min on one core: fp32 builds are slow)
    PYTHONPATH=. python bench/kernel_resources.py --dtypes bf16 --head-dims 72 --out -
"""
import argparse
import os
import sys
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("bench/kernel_resources.py builds for a GPU: unset TRITON_INTERPRET")

import torch  # noqa: E402

from bench.machine import machine_name  # noqa: E402
from dmf.kernels.offline_compile import CARDS, KERNELS, config_name, shared_memory  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def table(capabilities, dtypes, head_dims) -> list[str]:
    rows = []
    for dtype in dtypes:
        for head_dim in head_dims:
            for kernel, tuned in KERNELS.items():
                for capability in capabilities:
                    sizes = []
                    for config in tuned.configs:
                        try:
                            sizes.append(shared_memory(capability, kernel, config, DTYPES[dtype], head_dim))
                        except Exception as err:  # a build error is a result here, not a crash
                            sizes.append(f"error: {type(err).__name__}")
                    fits = sum(isinstance(s, int) and s <= dict(CARDS.values())[capability] for s in sizes)
                    cells = [f"{s // 1024}" if isinstance(s, int) else s for s in sizes]
                    rows.append(f"| {dtype} | {head_dim} | {kernel} | sm_{capability} | {' | '.join(cells)} | "
                                f"{fits} of {len(sizes)} |")
                    print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capabilities", default=",".join(str(c) for c, _ in CARDS.values()))
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--head-dims", default="64,72,256")
    parser.add_argument("--out", default="bench/results/kernel_resources.md", help="markdown file, or - for none")
    args = parser.parse_args()
    start = time.time()
    rows = table([int(c) for c in args.capabilities.split(",")], args.dtypes.split(","),
                 [int(d) for d in args.head_dims.split(",")])
    configs = {k: ", ".join(config_name(c) for c in t.configs) for k, t in KERNELS.items()}
    text = "\n".join([
        "# Fused JVP attention: shared memory per block, built offline for each card",
        "",
        f"`python {' '.join(sys.argv)}` on {machine_name(torch.device('cpu'))}, {time.time() - start:.0f} s "
        f"(Triton's compiler and ptxas; no GPU involved).",
        "",
        "Per block, in KB, for inputs (2, 2, 256, head dim) as the autograd Function passes them. A card runs a "
        "block shape whose shared memory is at most its opt-in limit: "
        + ", ".join(f"{name} {limit // 1024} KB" for name, (_, limit) in CARDS.items())
        + "; the autotuner skips the others.",
        "",
        f"- forward block shapes (BLOCK_M x BLOCK_N, warps, stages): {configs['forward']}",
        f"- tangent block shapes: {configs['tangent']}",
        "",
        "| dtype | head dim | kernel | card | " + " | ".join(f"shape {i + 1}" for i in range(5)) + " | fit |",
        "|---|---|---|---|" + "---|" * 5 + "---|",
        *rows, ""])
    if args.out != "-":
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
