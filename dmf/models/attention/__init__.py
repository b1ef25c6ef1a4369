"""Attention module and the backend registry it dispatches to."""
from dmf.models.attention.registry import (AttentionBackend, available_backends, check_available, get_backend,
                                           register_backend, resolve)
from dmf.models.attention.module import Attention, RMSNorm, set_attention_backend

__all__ = [
    "Attention", "AttentionBackend", "RMSNorm", "available_backends", "check_available", "get_backend", "register_backend",
    "resolve", "set_attention_backend",
]
