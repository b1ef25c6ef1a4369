"""`model.compile`: torch.compile of the network's forward, in place (parameter names unchanged).

Values: false; true (torch's default mode); or a torch.compile mode. `reduce-overhead` (and `max-autotune`) record
CUDA graphs, which removes the per-kernel launch cost of small-batch or 1-NFE generation; they are offered for
generation only (mode=eval / sample): a recorded graph reuses its output memory at the next call, and the training
step's JVP and backward are not what it is built for.

What it covers: every pass without tangents (the guidance evaluations, the flow-matching pass, sampling),
with SDPA/flash attention inside the compiled graph. A pass under `torch.func.jvp` runs eagerly (with the
fused JVP attention on CUDA): PyTorch compiles a JVP only when the `torch.func.jvp` call itself sits inside
the compiled function (pytorch/pytorch#128711), which is the objective's code, not the network's.
Compile time is printed when a call builds new graphs (first step, first no-grad pass, first eval pass).
"""
import time

import torch
from torch import nn
from torch.utils._pytree import tree_map

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_mode(value) -> str | None:
    """model.compile's value -> torch.compile's mode; None: not compiled."""
    if value is False or value is None:
        return None
    if value is True:
        return "default"
    if value in MODES:
        return value
    raise ValueError(f"model.compile={value!r} must be true, false or a torch.compile mode: {' | '.join(MODES)}")


def _graph_count() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


class _CompiledCall:
    """The compiled `__call__` of one network. A deepcopy of the network (the EMA copy) runs eagerly: the
    compiled function is bound to the original module, so copying it would make the copy call the original."""

    def __init__(self, fn, log, cuda_graphs: bool = False):
        self.fn, self.log, self.cuda_graphs = fn, log, cuda_graphs

    def __call__(self, *args, **kwargs):
        before, t0 = _graph_count(), time.perf_counter()
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.fn(*args, **kwargs)
        if (new := _graph_count() - before) > 0:
            self.log(f"[dmf] model.compile: {new} new graph(s), {time.perf_counter() - t0:.1f} s (compile + first run)")
        if self.cuda_graphs:  # the next replay overwrites the graph's output: a sampler may still hold this one
            out = tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)
        return out

    def __deepcopy__(self, memo):
        return None


def compile_network(net: nn.Module, backend: str = "inductor", log=print, mode: str = "default", **kwargs) -> nn.Module:
    compiled = torch.compile(net._call_impl, backend=backend, mode=mode, **kwargs)
    net._compiled_call_impl = _CompiledCall(compiled, log, cuda_graphs=mode in CUDA_GRAPH_MODES)
    return net
