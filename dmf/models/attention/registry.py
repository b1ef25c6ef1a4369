"""Registry of attention kernels.

A backend computes softmax(q k^T / sqrt(d)) v for q, k, v of shape (B, H, L, D). Backends declare
whether they support forward-mode AD (the DMF JVP needs it); `auto` picks, per call, the backend of highest
priority that is available on the device and supports what the call needs. A new kernel is one more
register_backend call (dmf/models/attention/backends.py registers the fused JVP kernel of dmf/kernels, imported
lazily); models never change.
"""
from dataclasses import dataclass
from typing import Callable

import torch

from dmf.core.errors import ConfigError


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    supports_jvp: bool
    is_available: Callable[[torch.device], bool]
    priority: int  # higher is tried first by `auto`


_BACKENDS: dict[str, AttentionBackend] = {}


def register_backend(backend: AttentionBackend) -> None:
    _BACKENDS[backend.name] = backend


def get_backend(name: str) -> AttentionBackend:
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown attention backend {name!r}; choose one of {sorted(_BACKENDS) + ['auto']} "
            f"(attention.backend=...)"
        )
    return _BACKENDS[name]


def _ranked() -> list[AttentionBackend]:
    """Every backend, the one `auto` tries first first."""
    return sorted(_BACKENDS.values(), key=lambda b: -b.priority)


def available_backends(device: torch.device) -> list[str]:
    return [b.name for b in _ranked() if b.is_available(device)]


def check_available(name: str, device: torch.device) -> None:
    """A backend named (not auto) runs on this device, checked before anything is built: else the first forward
    fails deep inside (flash-attn missing, Triton without CUDA)."""
    if name != "auto" and not get_backend(name).is_available(device):
        raise ConfigError(f"attention.backend={name} cannot run on {device.type} here (it needs a CUDA GPU and its "
                          f"package: pip install -e '.[gpu]'); available: {available_backends(device)}. Fix: "
                          f"attention.backend=auto (the fastest available for each call)")


def carries_tangent(t: torch.Tensor) -> bool:
    """True inside torch.func.jvp (functorch-wrapped) or for a forward-AD dual tensor."""
    if torch.compiler.is_compiling():
        # torch.compile cannot trace the per-tensor test (a graph break that drops the whole forward to eager);
        # it can read whether a transform or a forward-AD level is active (and guards on it)
        return torch._C._functorch.maybe_current_level() is not None or torch.autograd.forward_ad._current_level >= 0
    if torch._C._functorch.is_functorch_wrapped_tensor(t):
        return True
    return torch.autograd.forward_ad.unpack_dual(t).tangent is not None


def resolve(name: str, q: torch.Tensor) -> AttentionBackend:
    """The backend to run for this call: `name` itself, or for `auto` the fastest one that fits."""
    needs_jvp = carries_tangent(q)
    if name != "auto":
        backend = get_backend(name)
        if needs_jvp and not backend.supports_jvp:
            raise RuntimeError(
                f"attention backend {name!r} has no forward-mode AD, but this call carries tangents (DMF JVP); "
                f"use attention.backend=auto or a JVP-capable backend "
                f"({[b.name for b in _BACKENDS.values() if b.supports_jvp]})"
            )
        return backend
    return choose(needs_jvp, q.device)


def choose(needs_jvp: bool, device: torch.device) -> AttentionBackend:
    """`auto`: the highest-priority backend available on `device` that supports what the call needs."""
    for backend in _ranked():
        if (backend.supports_jvp or not needs_jvp) and backend.is_available(device):
            return backend
    raise RuntimeError("no attention backend available")  # unreachable: `math` runs everywhere
