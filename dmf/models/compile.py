"""`model.compile=true`: torch.compile of the network's forward, in place (parameter names unchanged).

What it covers: every pass without tangents (the guidance evaluations, the flow-matching pass, sampling),
with SDPA/flash attention inside the compiled graph. A pass under `torch.func.jvp` runs eagerly (with the
fused JVP attention on CUDA): PyTorch compiles a JVP only when the `torch.func.jvp` call itself sits inside
the compiled function (pytorch/pytorch#128711), which is the objective's code, not the network's.
Compile time is printed when a call builds new graphs (first step, first no-grad pass, first eval pass).
"""
import time

import torch
from torch import nn


def _graph_count() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


class _CompiledCall:
    """The compiled `__call__` of one network. A deepcopy of the network (the EMA copy) runs eagerly: the
    compiled function is bound to the original module, so copying it would make the copy call the original."""

    def __init__(self, fn, log):
        self.fn, self.log = fn, log

    def __call__(self, *args, **kwargs):
        before, t0 = _graph_count(), time.perf_counter()
        out = self.fn(*args, **kwargs)
        if (new := _graph_count() - before) > 0:
            self.log(f"[dmf] model.compile: {new} new graph(s), {time.perf_counter() - t0:.1f} s (compile + first run)")
        return out

    def __deepcopy__(self, memo):
        return None


def compile_network(net: nn.Module, backend: str = "inductor", log=print, **kwargs) -> nn.Module:
    net._compiled_call_impl = _CompiledCall(torch.compile(net._call_impl, backend=backend, **kwargs), log)
    return net
