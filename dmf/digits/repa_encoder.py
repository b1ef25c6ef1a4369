"""REPA's frozen target on the embedded digits task: a small self-supervised encoder of the clean digits.

DINOv2 is a self-supervised ViT: its normalised patch tokens, one per DiT token, carry what the images look
like without ever having seen a label. The stand-in keeps those three properties on 8x8 digits: a small network
trained contrastively (SimCLR's NT-Xent between two random shifts/rotations/scalings/noisings of the same digit,
no labels) that gives a 4x4 grid of 64-d tokens (one per token of a patch-2 SiT on 8x8), layer-normalised. It is not the network the digits Fréchet distance uses (a supervised classifier with another
architecture, dmf/digits/classifier.py), so REPA is not trained on the metric's own features.

Trained once (a few seconds on 2 cores, deterministic) and cached at $DMF_CACHE/digits_repa_encoder.pt, or read
from `weights`.
"""
import io
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dmf.digits.data import load_digits_tensors
from dmf.core.cache import cache_dir
from dmf.core.files import write_bytes_atomic
from dmf.models.checkpoint import safe_load

CACHE_NAME = "digits_repa_encoder.pt"


class DigitsTokenNet(nn.Module):
    """(N, 1, 8, 8) in [-1, 1] -> (N, 16, dim) tokens on the 4x4 grid (row-major, as a patch-2 SiT orders them).

    Token = MLP(its 2x2 patch with a 1-pixel border) + MLP(the whole digit): local strokes plus global identity,
    like a ViT's patch token after attention. Linear layers only: they train in seconds on a 2-core CPU."""

    def __init__(self, dim: int = 64, width: int = 256):
        super().__init__()
        self.local = nn.Sequential(nn.Linear(16, width), nn.GELU(), nn.Linear(width, dim))
        self.glob = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                  nn.Linear(width, dim))
        self.norm = nn.LayerNorm(dim)
        # contrastive head on the pooled tokens, used only while training
        self.head = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, 64))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (1, 8, 8):
            raise ValueError(f"the digits REPA encoder takes (N, 1, 8, 8) digits, got {tuple(x.shape)}")
        patches = F.unfold(x + 1, kernel_size=4, stride=2, padding=1).transpose(1, 2)  # (N, 16, 16), border = -1
        return self.norm(self.local(patches) + self.glob(x.flatten(1)).unsqueeze(1))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random small affine warp (shift up to 1 px, rotation up to 12 degrees, scale 0.9-1.1) plus pixel noise."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(12)
    scale = 0.9 + 0.2 * torch.rand(n, generator=g)
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (2 / 8)  # 1 px in normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # background is -1: warp x + 1 with zero padding
    warped = F.grid_sample(x + 1, grid, padding_mode="zeros", align_corners=False) - 1
    return (warped + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def train_token_net(dim: int = 64, epochs: int = 30, batch: int = 256, seed: int = 0,
                    temperature: float = 0.2) -> DigitsTokenNet:
    """Contrastive training on the clean digits, labels unused."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # layers this small run several times faster on one thread than on two busy ones
    try:
        return _train(dim, epochs, batch, seed, temperature)
    finally:
        torch.set_num_threads(threads)


def _train(dim, epochs, batch, seed, temperature) -> DigitsTokenNet:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, _ = load_digits_tensors()
    net = DigitsTokenNet(dim)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(order) - batch + 1, batch):
            xb = x[order[i:i + batch]]
            za, zb = (net.head(net.tokens(augment(xb, g)).mean(1)) for _ in range(2))
            loss = nt_xent(za, zb, temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def default_cache() -> Path:
    return cache_dir() / CACHE_NAME


class DigitsEncoder(nn.Module):
    """encoder(images in [-1, 1], (N, 1, 8, 8)) -> [(N, 16, dim)]: frozen normalised tokens for REPA."""

    def __init__(self, dim: int = 64, weights: str | None = None):
        super().__init__()
        self.net = DigitsTokenNet(dim)
        path = Path(weights) if weights else default_cache()
        if path.exists():
            state = safe_load(path, key="objective.encoder.weights")
            self.net.load_state_dict(state["state_dict"])
        elif weights:
            raise FileNotFoundError(f"objective.encoder.weights={weights} does not exist (null = train once and "
                                    f"cache at {default_cache()})")
        else:
            self.net = train_token_net(dim)
            buf = io.BytesIO()
            torch.save({"state_dict": self.net.state_dict(), "dim": dim}, buf)
            write_bytes_atomic(path, buf.getvalue())
        self.net.eval().requires_grad_(False)
        self.z_dims = (dim,)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.net.tokens(images.float())]
