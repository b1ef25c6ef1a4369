"""Write a randomly initialised network as a checkpoint file, so that `run.py ... ckpt=<file>` exercises the real
loading path without published weights (benchmarks, smoke runs on a GPU).

    python bench/init_checkpoint.py --model DMFT-XL/2 --input-size 32 --out /tmp/dmf_xl_256_init.pt
"""
import argparse

import torch

from dmf.models import build_model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="DMFT-XL/2")
    p.add_argument("--input-size", type=int, default=32, help="latent size: resolution / 8")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dmf-depth", type=int, default=20)
    p.add_argument("--qk-norm", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", nargs=3, type=int, metavar=("DEPTH", "HIDDEN", "HEADS"), help="a custom size (smoke runs)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    net = build_model(a.model, input_size=a.input_size, in_channels=a.channels, num_classes=a.num_classes,
                      dmf_depth=a.dmf_depth if a.model.startswith("DMFT") else None, qk_norm=a.qk_norm,
                      **(dict(zip(("depth", "hidden_size", "num_heads"), a.size)) if a.size else {}))
    for p_ in net.parameters():  # DiT zero-inits the output layers: a realistic step needs non-zero weights
        if p_.dim() > 1:
            torch.nn.init.normal_(p_, std=0.02)
    torch.save({"model": net.state_dict()}, a.out)
    print(f"wrote {a.out}: {a.model}, {sum(p_.numel() for p_ in net.parameters()) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
