"""Does compiling the objective's torch.func.jvp call (not only the network) pay on this machine? A probe, not a
feature: DMFT-T/2 on 8x8 with math attention, JVP + backward, eager vs torch.compile of the whole JVP call.

    PYTHONPATH=. python bench/compile_jvp_probe.py [inductor|aot_eager]

The attention's per-call tangent test (dmf.models.attention.registry.carries_tangent) graph-breaks under a compiled
JVP, which drops the whole call to eager; the probe replaces it by a constant (math attention runs either way).
Why the objective's JVP stays eager anyway: docs/performance.md (`model.compile=true`).
"""
import statistics
import sys
import time

import torch

import dmf.models.attention.registry as registry
from dmf.models import build_model
from dmf.models.attention import set_attention_backend


def main(backend: str = "inductor", batch: int = 64, repeats: int = 5):
    torch.manual_seed(0)
    net = build_model("DMFT-T/2", input_size=8, in_channels=1, num_classes=10, dmf_depth=4)
    for p in net.parameters():  # the zero-initialised output layers would make the step unrealistically cheap
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    set_attention_backend(net, "math")
    registry.carries_tangent = lambda q: False  # see the docstring
    x, t = torch.randn(batch, 1, 8, 8), torch.rand(batch)
    r, y, v = torch.rand(batch) * t, torch.randint(0, 10, (batch,)), torch.randn(batch, 1, 8, 8)

    def u_and_du_dt(x, t, r, y, v):
        (u, lv), (du, _) = torch.func.jvp(lambda a, b, c: net(a, b, c, y, return_logvar=True), (x, t, r),
                                          (v, torch.ones_like(t), torch.zeros_like(r)))
        return u, lv, du

    def step(fn):
        u, lv, du = fn(x, t, r, y, v)
        net.zero_grad()
        ((u - (v + du).detach()).pow(2).mean() + lv.mean()).backward()
        return u.detach(), du.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]

    ref = step(u_and_du_dt)
    compiled = torch.compile(u_and_du_dt, backend=backend)
    t0 = time.perf_counter()
    out = step(compiled)
    print(f"compile + first step: {time.perf_counter() - t0:.1f} s ({backend}); graph breaks: "
          f"{sum(torch._dynamo.utils.counters['graph_break'].values())}")
    print(f"max |difference| u {(out[0] - ref[0]).abs().max():.1e}, du/dt {(out[1] - ref[1]).abs().max():.1e}, "
          f"grads {max((a - b).abs().max() for a, b in zip(out[2], ref[2])):.1e}")
    times = {"eager": [], "compiled": []}
    for _ in range(repeats):  # interleaved, so both see the same load
        for name, fn in (("eager", u_and_du_dt), ("compiled", compiled)):
            t0 = time.perf_counter()
            step(fn)
            times[name].append(time.perf_counter() - t0)
    eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
    print(f"median of {repeats}, batch {batch}, {torch.get_num_threads()} threads: eager {eager:.3f} s, "
          f"compiled {comp:.3f} s, compiled/eager {comp / eager:.2f}x")


if __name__ == "__main__":
    main(*sys.argv[1:2])
