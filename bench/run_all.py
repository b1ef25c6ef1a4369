"""`make bench`: the CPU benchmarks, each appending a markdown block to bench/results/*_cpu.md.

GPU benchmarks: `bash bench/gpu_all.sh` runs all of them in one go on one GPU (results in bench/results/*_gpu*.md,
named by the card).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUNS = [
    ["bench/dmf_step.py", "--model", "DMFT-T/2", "--resolution", "8", "--downsample", "1", "--channels", "1",
     "--num-classes", "10", "--dmf-depth", "4", "--batch", "128", "--sample-batch", "512", "--configs", "math:eager,auto:eager",
     "--profile", "auto:eager", "--interleave", "--iters", "6",
     "--out", str(RESULTS / "dmf_step_cpu.md")],
    ["bench/eval_throughput.py", "--out", str(RESULTS / "eval_cpu.md")],
    ["bench/data_throughput.py", "--out", str(RESULTS / "data_cpu.md")],
]

if __name__ == "__main__":
    for args in RUNS:
        print(f"$ python {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
