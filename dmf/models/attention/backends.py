"""The built-in attention backends: math (any AD mode, any device), sdpa (fast, no forward AD), flash-attn, and
fused_jvp (dmf/kernels: Triton, forward AD in one fused pass; `auto` picks it for tangent-carrying calls on CUDA)."""
import importlib.util

import torch
import torch.nn.functional as F

from dmf.models.attention.registry import AttentionBackend, register_backend


def math_attention(q, k, v):
    scale = q.shape[-1] ** -0.5
    attn = (q * scale) @ k.transpose(-2, -1)
    return attn.softmax(dim=-1) @ v


def sdpa_attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def flash_attention(q, k, v):
    from flash_attn import flash_attn_func  # optional `gpu` extra; imported only when this backend runs

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def fused_jvp_attention(q, k, v):
    from dmf.kernels.jvp_attention import jvp_attention  # needs triton, imported only when this backend runs

    return jvp_attention(q, k, v)


def _flash_available(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None


def _triton_available(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


register_backend(AttentionBackend("math", math_attention, supports_jvp=True, is_available=lambda d: True, priority=0))
register_backend(AttentionBackend("sdpa", sdpa_attention, supports_jvp=False, is_available=lambda d: True, priority=10))
# Below sdpa/flash: tangent-free calls keep the fast SDPA forward and backward; only JVP calls land here.
register_backend(AttentionBackend("fused_jvp", fused_jvp_attention, supports_jvp=True, is_available=_triton_available,
                                  priority=5))
register_backend(AttentionBackend("flash", flash_attention, supports_jvp=False, is_available=_flash_available, priority=20))
