"""Triton kernels for non-causal attention and its forward-mode derivative (JVP).

Shapes (B, H, L, D), any strides, any L (the key tail is masked), D <= 256 (loaded into a power-of-two
block of at least 16, the padding masked to zero). Inputs fp16 / bf16 / fp32; every dot accumulates in fp32.

- `forward(q, k, v, scale)` -> o, lse: flash-style online softmax, one pass over the keys.
- `tangent(q, k, v, o, lse, dq, dk, dv, scale)` -> (do, dlse): with p = exp(s - lse) known exactly from the
  forward's log-sum-exp there is nothing to rescale, so one pass accumulates
      sum_j p_ij s'_ij v_j + p_ij v'_j   and   g_i = sum_j p_ij s'_ij,   s' = scale (q' k^T + q k'^T),
  and do = that - g o (the softmax JVP), dlse = g. o is read, not recomputed.

On a CPU tensor the kernels run in Triton's interpreter (tests only; slow). On CUDA they are autotuned
over a few block shapes per (padded D, dtype). A head dim of 72 runs in a 128-wide block (masked), so the
dots do ~1.8x the necessary work there; splitting D into 64 + 16 is the next step if the profile says so.
"""
import functools

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _tile(ptr, i, j, s_i, s_j, n_i, n_j):
    """The (len(i), len(j)) tile at ptr[i * s_i + j * s_j]; zero outside [0, n_i) x [0, n_j) (ragged L, padded D)."""
    return tl.load(ptr + i[:, None] * s_i + j[None, :] * s_j, mask=(i[:, None] < n_i) & (j[None, :] < n_j), other=0.0)


@triton.jit
def _store_tile(ptr, i, j, s_i, s_j, n_i, n_j, value):
    """`value` into the tile at ptr[i * s_i + j * s_j], inside [0, n_i) x [0, n_j) only, in ptr's dtype."""
    tl.store(ptr + i[:, None] * s_i + j[None, :] * s_j, value.to(ptr.dtype.element_ty),
             mask=(i[:, None] < n_i) & (j[None, :] < n_j))


@triton.jit
def _program(H, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's (batch x head) index, its batch and head, its query rows and the head dims."""
    pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
    b, h = (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)
    return pid_bh.to(tl.int64), b, h, pid_m * BLOCK_M + tl.arange(0, BLOCK_M), tl.arange(0, BLOCK_D)


def _forward_kernel(
    Q, K, V, O, LSE,
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd, sob, soh, sol, sod,
    H, L, D, scale_log2,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bh, b, h, rows, dims = _program(H, BLOCK_M, BLOCK_D)
    q = _tile(Q + b * sqb + h * sqh, rows, dims, sql, sqd, L, D)
    k_base, v_base = K + b * skb + h * skh, V + b * svb + h * svh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, L, BLOCK_N):
        n = start + tl.arange(0, BLOCK_N)
        k_t = _tile(k_base, dims, n, skd, skl, D, L)  # k^T, (BLOCK_D, BLOCK_N)
        s = tl.dot(q, k_t, input_precision=PRECISION) * scale_log2  # log2 domain: exp2 is the fast path
        s = tl.where(n[None, :] < L, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _tile(v_base, n, dims, svl, svd, L, D)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    _store_tile(O + b * sob + h * soh, rows, dims, sol, sod, L, D, o)
    tl.store(LSE + bh * L + rows, (m_i + tl.log2(l_i)) * 0.6931471805599453, mask=rows < L)


def _tangent_kernel(
    Q, K, V, QT, KT, VT, O, LSE, OT, LSET,
    sqb, sqh, sql, sqd, skb, skh, skl, skd, svb, svh, svl, svd,
    tqb, tqh, tql, tqd, tkb, tkh, tkl, tkd, tvb, tvh, tvl, tvd,
    sob, soh, sol, sod, tob, toh, tol, tod,
    H, L, D, scale,
    PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    bh, b, h, rows, dims = _program(H, BLOCK_M, BLOCK_D)
    q = _tile(Q + b * sqb + h * sqh, rows, dims, sql, sqd, L, D)
    q_t = _tile(QT + b * tqb + h * tqh, rows, dims, tql, tqd, L, D)
    lse_log2 = tl.load(LSE + bh * L + rows, mask=rows < L, other=0.0) * 1.4426950408889634
    k_base, v_base = K + b * skb + h * skh, V + b * svb + h * svh
    kt_base, vt_base = KT + b * tkb + h * tkh, VT + b * tvb + h * tvh
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)  # sum_j p s' v + p v'
    g = tl.zeros([BLOCK_M], tl.float32)  # sum_j p s' = the tangent of lse
    for start in range(0, L, BLOCK_N):
        n = start + tl.arange(0, BLOCK_N)
        k_t = _tile(k_base, dims, n, skd, skl, D, L)
        kd_t = _tile(kt_base, dims, n, tkd, tkl, D, L)
        s = tl.dot(q, k_t, input_precision=PRECISION) * (scale * 1.4426950408889634)
        p = tl.where(n[None, :] < L, tl.exp2(s - lse_log2[:, None]), 0.0)
        s_t = tl.dot(q_t, k_t, input_precision=PRECISION)
        s_t = tl.dot(q, kd_t, s_t, input_precision=PRECISION) * scale
        ps = p * s_t
        g += tl.sum(ps, 1)
        v = _tile(v_base, n, dims, svl, svd, L, D)
        v_t = _tile(vt_base, n, dims, tvl, tvd, L, D)
        acc = tl.dot(ps.to(v.dtype), v, acc, input_precision=PRECISION)
        acc = tl.dot(p.to(v_t.dtype), v_t, acc, input_precision=PRECISION)
    o = _tile(O + b * sob + h * soh, rows, dims, sol, sod, L, D)
    o_t = acc - g[:, None] * o.to(tl.float32)
    _store_tile(OT + b * tob + h * toh, rows, dims, tol, tod, L, D, o_t)
    tl.store(LSET + bh * L + rows, g, mask=rows < L)


def _configs(*shapes):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st) for m, n, w, st in shapes]


# A few shapes each (tuning compiles every one); keyed on the padded head dim and precision, not on L, so a
# new sequence length reuses the tuning. The tangent kernel holds twice the tiles, hence smaller blocks.
# SMALLEST fits one block's shared memory on an A100 and an H100 for every input the backend accepts (fp32 at
# head dim 256: 136 KB for the tangent); the tuning skips shapes a card cannot hold (bench/results/kernel_resources.md).
_AUTOTUNE_KEY = ["BLOCK_D", "PRECISION"]
SMALLEST = (32, 32, 4, 1)
_GPU_FORWARD = triton.autotune(
    _configs((64, 64, 4, 2), (128, 64, 8, 2), (128, 32, 4, 3), (64, 32, 4, 3), SMALLEST), key=_AUTOTUNE_KEY)(
    triton.jit(_forward_kernel))
_GPU_TANGENT = triton.autotune(
    _configs((64, 32, 4, 2), (64, 64, 8, 2), (32, 64, 4, 2), (128, 32, 8, 2), SMALLEST), key=_AUTOTUNE_KEY)(
    triton.jit(_tangent_kernel))
_CPU_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 32}  # the interpreter: small blocks, no tuning


def interpreter_ready() -> bool:
    """Triton's interpreter works only if TRITON_INTERPRET=1 was set before triton was first imported (its own
    library functions are built for one mode at import)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.max, InterpretedFunction)


@functools.cache
def _interpreted(kernel):
    from triton.runtime.interpreter import InterpretedFunction

    return InterpretedFunction(kernel)


def _launcher(kernel, gpu_kernel, device: torch.device):
    if device.type == "cuda":
        return functools.partial(_launch_on_gpu, gpu_kernel)
    return lambda grid, *args, **kw: _interpreted(kernel)[grid](*args, **kw, **_CPU_BLOCKS)


def _launch_on_gpu(gpu_kernel, grid, *args, **kwargs):
    try:
        return gpu_kernel[grid](*args, **kwargs)
    except triton.runtime.errors.OutOfResources as err:  # every tuned block shape was too big for this card
        q = args[0]
        raise RuntimeError(
            f"the fused JVP attention kernel does not fit this GPU for {q.dtype} inputs with head dim {q.shape[-1]}: "
            f"it needs {err.required} bytes of {err.name} per block, the card gives {err.limit}. Fix: train in bf16 "
            f"(trainer.precision=bf16-mixed) or set attention.backend=math") from err


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs follow torch's matmul setting (TF32 only where the user allowed it); 16-bit dots take the default
    return "ieee" if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32 else "tf32"


def _grid(q):
    b, h, n, _ = q.shape
    return lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), b * h)


def forward_call(q, k, v, scale: float):
    """The forward kernel's outputs (o, lse) and its arguments: one list for the launch and the offline compile
    check (dmf.kernels.offline_compile)."""
    b, h, n, d = q.shape
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty((b, h, n), device=q.device, dtype=torch.float32)
    args = (q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(), h, n, d, scale * LOG2E)
    return (o, lse), args, dict(PRECISION=_precision(q.dtype), BLOCK_D=_block_d(d))


def tangent_call(q, k, v, o, lse, q_t, k_t, v_t, scale: float):
    """The tangent kernel's outputs (o', lse') and its arguments, as forward_call."""
    h, n, d = q.shape[1:]
    o_t = torch.empty_like(o, memory_format=torch.contiguous_format)
    lse_t = torch.empty_like(lse)
    args = (q, k, v, q_t, k_t, v_t, o, lse, o_t, lse_t,
            *q.stride(), *k.stride(), *v.stride(), *q_t.stride(), *k_t.stride(), *v_t.stride(),
            *o.stride(), *o_t.stride(), h, n, d, scale)
    return (o_t, lse_t), args, dict(PRECISION=_precision(q.dtype), BLOCK_D=_block_d(d))


def forward(q, k, v, scale: float):
    outputs, args, kwargs = forward_call(q, k, v, scale)
    _launcher(_forward_kernel, _GPU_FORWARD, q.device)(_grid(q), *args, **kwargs)
    return outputs


def tangent(q, k, v, o, lse, q_t, k_t, v_t, scale: float):
    outputs, args, kwargs = tangent_call(q, k, v, o, lse, q_t, k_t, v_t, scale)
    _launcher(_tangent_kernel, _GPU_TANGENT, q.device)(_grid(q), *args, **kwargs)
    return outputs
