"""Multi-head self-attention whose kernel is chosen through the backend registry."""
import torch
from torch import nn

from dmf.models.attention import backends as _builtin  # noqa: F401  (registers math, sdpa, flash, fused_jvp)
from dmf.models.attention.registry import get_backend, resolve


class RMSNorm(nn.Module):
    """RMS norm over the head dimension; the parameter is named `scale` as in the official 512 checkpoints."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # statistics in at least float32, also under bf16 autocast (stability at 512); float64 stays float64
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale.to(xf.dtype)
        return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False, backend: str = "auto"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.backend = backend
        if backend != "auto":
            get_backend(backend)  # fail at build time on a typo, not at the first step

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        out = resolve(self.backend, q).fn(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def set_attention_backend(model: nn.Module, backend: str) -> None:
    if backend != "auto":
        get_backend(backend)
    for m in model.modules():
        if isinstance(m, Attention):
            m.backend = backend
