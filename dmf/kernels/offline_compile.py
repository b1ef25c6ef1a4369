"""Compile the Triton kernels for a GPU that is not here: Triton's compiler and ptxas need no card. A kernel that
does not build for a card, or whose every autotune block shape needs more shared memory than the card gives one
block, shows on a CPU machine instead of on a lent GPU's clock (`bench/kernel_resources.py`, its test).

Needs Triton's compiler, so not under TRITON_INTERPRET=1 (which replaces every @triton.jit function)."""
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

from dmf.kernels import triton_attention as ta

# Shared memory one block may use (opt-in), bytes: the CUDA programming guide's table per compute capability.
CARDS = {"A100 (sm_80)": (80, 166912), "L40S / RTX 4090 (sm_89)": (89, 101376), "H100 / H200 (sm_90)": (90, 232448)}
KERNELS = {"forward": ta._GPU_FORWARD, "tangent": ta._GPU_TANGENT}


def compile_for(capability: int, kernel: JITFunction, *args, **kwargs):
    """`kernel` built for CUDA compute capability `capability` with the specialisation a launch with these
    arguments gets (CPU tensors stand in: the compiler reads only their dtype, strides and alignment)."""
    if not isinstance(kernel, JITFunction):
        raise RuntimeError("compiling for a GPU needs Triton's compiler: unset TRITON_INTERPRET")
    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)


def kernel_arguments(dtype: torch.dtype, head_dim: int, seq_len: int = 256) -> dict[str, tuple[tuple, dict]]:
    """Each kernel's launch arguments for (2, 2, seq_len, head_dim) inputs of `dtype`, as the Function passes them."""
    q, k, v, q_t, k_t, v_t = (torch.randn(2, 2, seq_len, head_dim, dtype=dtype) for _ in range(6))
    (o, lse), forward_args, forward_kwargs = ta.forward_call(q, k, v, 0.125)
    _, tangent_args, tangent_kwargs = ta.tangent_call(q, k, v, o, lse, q_t, k_t, v_t, 0.125)
    return {"forward": (forward_args, forward_kwargs), "tangent": (tangent_args, tangent_kwargs)}


def config_name(config: triton.Config) -> str:
    return f"{config.kwargs['BLOCK_M']}x{config.kwargs['BLOCK_N']} w{config.num_warps} s{config.num_stages}"


def shared_memory(capability: int, kernel: str, config: triton.Config, dtype: torch.dtype, head_dim: int) -> int:
    """Bytes of shared memory one block of `kernel` (forward | tangent) in this autotune config uses on the card."""
    args, kwargs = kernel_arguments(dtype, head_dim)[kernel]
    built = compile_for(capability, KERNELS[kernel].fn, *args, **kwargs, **config.kwargs,
                        num_warps=config.num_warps, num_stages=config.num_stages)
    return built.metadata.shared
