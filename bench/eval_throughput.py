"""Images/s of end-to-end evaluation: noise -> 1-step (or N-step) sampler -> decode -> uint8 -> feature networks
-> running metric statistics, through dmf.eval.generation.loop.run (the code path of mode=eval), with random weights
(saved to temp files and loaded through the real loaders) so that it runs offline.

CPU (recorded in bench/results/eval_cpu.md):
    PYTHONPATH=. .venv/bin/python bench/eval_throughput.py --out bench/results/eval_cpu.md
GPU, the paper's setting (DMF-XL/2 at 256, SD-VAE decode, Inception; add dinov2 for FD-DINOv2):
    PYTHONPATH=. python bench/eval_throughput.py --device cuda --model DMFT-XL/2 --resolution 256 --vae sd \
        --features inception,dinov2 --batch 256 --num-samples 4096 --precision tf32 --out bench/results/eval_gpu.md
The network alone (--vae latent: SD latent shapes, no decode, no features) with CUDA graphs (model.compile's
modes; compile time is printed and excluded from the rate by the warm-up):
    PYTHONPATH=. python bench/eval_throughput.py --device cuda --model DMFT-XL/2 --resolution 256 --vae latent \
        --features none --batch 256 --num-samples 4096 --precision bf16 --compile reduce-overhead
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dmf.eval.scoring.features import DINOv2, InceptionV3
from dmf.eval.generation.loop import Plan, Renderer, run
from dmf.eval.scoring.metrics import Frechet, InceptionScore
from dmf.eval.scoring.scorer import Scorer
from dmf.models import SIZES, build_model, parse_name
from dmf.models.compile import MODES
from dmf.sampling import build_sampler
from bench.machine import machine_name

SD_VAE_CONFIG = dict(  # sd-vae-ft-mse / ft-ema architecture (83.7M params)
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=32,
    sample_size=256, act_fn="silu",
)


class RandomSDVAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from diffusers import AutoencoderKL

        self.ae = AutoencoderKL(**SD_VAE_CONFIG)

    def decode(self, z):
        return self.ae.decode(z / 0.18215).sample


class Identity:
    def decode(self, z):
        return z


class LatentChannels:
    """--vae latent: no decoder; the first three latent channels stand in for RGB (uint8 conversion needs 1 or 3)."""

    def decode(self, z):
        return z[:, :3]


def random_inception(tmp: Path) -> InceptionV3:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    orig = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
    try:
        torch.save({}, tmp / "empty.pth")
        net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(tmp / "empty.pth"))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = orig
    torch.save(net.state_dict(), tmp / "inception.pth")
    return InceptionV3(weights=str(tmp / "inception.pth"))


def random_dinov2(tmp: Path) -> DINOv2:
    import timm

    m = timm.create_model("vit_large_patch14_dinov2", pretrained=False, num_classes=0, img_size=518)
    torch.save(m.state_dict(), tmp / "dinov2.pth")
    return DINOv2(weights=str(tmp / "dinov2.pth"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="DMFT-T/2")
    p.add_argument("--resolution", type=int, default=8, help="image size (latent = resolution / 8 with --vae sd)")
    p.add_argument("--channels", type=int, default=1, help="image channels for --vae identity")
    p.add_argument("--vae", choices=["identity", "sd", "latent"], default="identity",
                   help="identity: pixel-space model; sd: SD-VAE decode; latent: SD latent shapes, not decoded")
    p.add_argument("--features", default="inception", help="comma list of inception, dinov2; or none")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--num-samples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="tf32")
    p.add_argument("--decode-precision", choices=["fp32", "bf16"], default="fp32", help="eval.decode_precision")
    p.add_argument("--compile", choices=["none", *MODES], default="none", help="model.compile (none: eager)")
    p.add_argument("--out", help="append a markdown row block to this file")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.precision != "fp32"
    torch.backends.cudnn.allow_tf32 = a.precision != "fp32"
    latent, channels = (a.resolution // 8, 4) if a.vae in ("sd", "latent") else (a.resolution, a.channels)
    tiny = {"depth": 3, "hidden_size": 32, "num_heads": 2} if a.model.startswith("DMFT-T") else {}
    depth = tiny.get("depth") or SIZES[parse_name(a.model)[1]][0]
    net = build_model(a.model, input_size=latent, in_channels=channels, num_classes=10 if a.vae == "identity" else 1000,
                      dmf_depth=20 if depth == 28 else (2 * depth) // 3, compile=a.compile != "none" and a.compile,
                      **tiny).to(device).eval()  # XL: 20 of 28
    vae = {"sd": lambda: RandomSDVAE().to(device).eval(), "latent": LatentChannels, "identity": Identity}[a.vae]()
    with tempfile.TemporaryDirectory() as tmp:
        exts, metrics = {}, {}
        for name in [f for f in a.features.split(",") if f and f != "none"]:
            if name == "inception":
                exts["inception"] = random_inception(Path(tmp))
                metrics["fid"], metrics["is"] = Frechet("inception", "pool"), InceptionScore()
            elif name == "dinov2":
                exts["dinov2"] = random_dinov2(Path(tmp))
                metrics["fd_dinov2"] = Frechet("dinov2", "cls")
        scorer = Scorer(metrics, exts).to(device) if metrics else None
    plan = Plan(a.num_samples, 0, (channels, latent, latent), net.num_classes, a.batch, chunk_size=a.num_samples)
    render = Renderer(net, build_sampler("euler", steps=a.steps), vae, device,
                      torch.bfloat16 if a.precision == "bf16" else None, decode_precision=a.decode_precision)
    warm = 3 * a.batch if a.compile != "none" else a.batch  # CUDA graph trees record on a later call than the first
    run(Plan(warm, 0, plan.shape, plan.num_classes, a.batch), render, scorer, log=lambda m: None)  # warm-up
    rates = []
    for _ in range(a.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        run(plan, render, scorer, log=lambda m: None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(a.num_samples / (time.perf_counter() - t))
    median = statistics.median(rates)
    machine = machine_name(device)
    compiled = "" if a.compile == "none" else f" / compile {a.compile}"
    line = (f"| {machine} | {a.model} {a.resolution}px ({channels}x{latent}x{latent}) | {a.vae} | "
            f"{a.features} | {a.steps} | {a.batch} | {a.precision} / decode {a.decode_precision}{compiled} | {median:.1f} | "
            f"{', '.join(f'{r:.1f}' for r in rates)} |")
    print(line)
    if a.out:
        out = Path(a.out)
        if not out.exists():
            out.write_text("| machine | model | decode | features | steps | batch | precision | median img/s | runs |\n"
                           "|---|---|---|---|---|---|---|---|---|\n")
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
