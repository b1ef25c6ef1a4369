"""Fused attention with a forward-mode derivative: `jvp_attention(q, k, v)` = softmax(q k^T / sqrt(d)) v.

Why our own kernel and not the `jvp-flash-attention` package (0.14.0, measured on CPU in Triton's interpreter: docs/performance.md): it
returns silently wrong rows when L is not a multiple of 32 (the digits models have L = 16; any other
resolution / patch size may not be a multiple either), its shape checks are asserts that vanish under
`python -O`, it rejects head dim 72 (XL) so a wrapper must pad to 128 anyway, it crashes when only some
inputs carry tangents, and only one of its two entry points works under torch.func.jvp. The math of the
JVP is short (see dmf.kernels.triton_attention), so owning ~150 lines of Triton costs less than guarding
every one of those cases from outside.

`torch.func.jvp` (and forward-mode AD) reach the kernel through the `jvp` staticmethod: the forward
computes o and the log-sum-exp, the JVP reads both and computes o' in one more pass. The backward of the
primal recomputes attention with `F.scaled_dot_product_attention` (flash / memory-efficient kernels on
CUDA), so only q, k, v are saved and nothing of size L x L is ever stored. Gradients do not flow through
the tangent output: the DMF target that uses it is stop-gradient.
"""
import os

import torch
import torch.nn.functional as F

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


class _JVPAttention(torch.autograd.Function):
    @staticmethod
    def forward(q, k, v, scale):
        from dmf.kernels import triton_attention

        return triton_attention.forward(q, k, v, scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        q, k, v, scale = inputs
        o, lse = output
        ctx.scale = scale
        ctx.mark_non_differentiable(lse)
        ctx.save_for_backward(q, k, v)
        ctx.save_for_forward(q, k, v, o, lse)

    @staticmethod
    def backward(ctx, grad_o, _grad_lse):
        q, k, v = ctx.saved_tensors
        with torch.enable_grad():
            q_, k_, v_ = (t.detach().requires_grad_() for t in (q, k, v))
            o = F.scaled_dot_product_attention(q_, k_, v_, scale=ctx.scale)
        return (*torch.autograd.grad(o, (q_, k_, v_), grad_o), None)

    @staticmethod
    def jvp(ctx, q_t, k_t, v_t, _scale_t):
        from dmf.kernels import triton_attention

        with torch._C._DisableFuncTorch():  # plain tensors in and out: the kernel needs data pointers
            q, k, v, o, lse = (_plain(t) for t in ctx.saved_tensors)
            q_t, k_t, v_t = (torch.zeros_like(p) if t is None else _plain(t).to(p.dtype)
                             for p, t in ((q, q_t), (k, k_t), (v, v_t)))
            o_t, _ = triton_attention.tangent(q, k, v, o, lse, q_t, k_t, v_t, ctx.scale)
        return o_t, None


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The storage-backed tensor under torch.func's wrappers (a kernel needs a data pointer). Safe here: inside
    jvp only the tangent level is wrapped, and the kernel's outputs carry no graph by design."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def _interpreting() -> bool:
    from dmf.kernels.triton_attention import interpreter_ready

    return os.environ.get("TRITON_INTERPRET") == "1" and interpreter_ready()


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """One clear error for anything the kernel does not handle (never an assert: those vanish under -O)."""
    if not (q.dim() == 4 and q.shape == k.shape == v.shape):
        raise ValueError(f"jvp_attention needs q, k, v of one shape (B, H, L, D) (self-attention), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(f"jvp_attention supports head dims up to {MAX_HEAD_DIM}, got {q.shape[-1]}; "
                         f"use attention.backend=math")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"jvp_attention supports {SUPPORTED_DTYPES}, got {q.dtype}; use attention.backend=math")
    if q.device.type == "cpu" and not _interpreting():
        raise RuntimeError("attention.backend=fused_jvp runs on CUDA devices; on a CPU it only runs in Triton's "
                           "interpreter (slow, for tests: TRITON_INTERPRET=1 set before triton is imported). "
                           "Use attention.backend=auto")
    if q.device.type not in ("cuda", "cpu"):
        raise RuntimeError(f"attention.backend=fused_jvp runs on CUDA devices, not {q.device.type}")


def compute_dtype(q, k, v) -> torch.dtype:
    """Autocast's dtype when it is on (as SDPA does), else the promoted input dtype (qk-norm gives fp32 q, k)."""
    if torch.is_autocast_enabled(q.device.type):
        return torch.get_autocast_dtype(q.device.type)
    return torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)


def jvp_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    dtype = compute_dtype(q, k, v)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    check_inputs(q, k, v)
    o, _ = _JVPAttention.apply(q, k, v, q.shape[-1] ** -0.5)
    return o
