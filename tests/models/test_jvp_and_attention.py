import pytest
import torch
from torch.func import jvp

from dmf.models.attention import available_backends, get_backend, set_attention_backend
from dmf.models.attention.registry import choose, resolve
from tests.helpers import tiny_dmft, tiny_mf


@pytest.mark.parametrize("make", [tiny_dmft, tiny_mf])  # DMFT and the MeanFlow baseline
def test_flow_map_jvp_matches_central_finite_differences(make):
    torch.manual_seed(0)
    net = make(qk_norm=True).double()
    for p in net.parameters():  # the DiT init zeroes the output layers; randomise so the test can fail
        torch.nn.init.normal_(p, std=0.2)
    x, v = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t, r, y = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.2, 0.5, 0.0], dtype=torch.float64), torch.tensor([1, 2, 10])
    _, du_dt = jvp(lambda x_, t_, r_: net(x_, t_, r_, y), (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    eps = 1e-6
    fd = (net(x + eps * v, t + eps, r, y) - net(x - eps * v, t - eps, r, y)) / (2 * eps)
    assert du_dt.abs().max() > 1e-3
    assert torch.allclose(du_dt, fd, rtol=1e-5, atol=1e-7)


def test_math_and_sdpa_backends_agree():
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    assert torch.allclose(get_backend("math").fn(q, k, v), get_backend("sdpa").fn(q, k, v), atol=1e-5)


def test_auto_uses_sdpa_without_tangents_and_a_jvp_capable_backend_with_them():
    q = torch.randn(1, 1, 4, 8)
    assert resolve("auto", q).name == "sdpa"
    picked = []
    jvp(lambda a: picked.append(resolve("auto", a).name) or a, (q,), (q,))
    assert picked == ["math"]
    assert get_backend(picked[0]).supports_jvp


def test_explicit_backend_without_forward_ad_fails_clearly_under_jvp():
    net = tiny_dmft()
    set_attention_backend(net, "sdpa")
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    with pytest.raises(RuntimeError, match="no forward-mode AD.*attention.backend=auto"):
        jvp(lambda x_: net(x_, t, t, torch.tensor([0, 1])), (x,), (x,))


def test_unknown_backend_is_rejected_at_build_time():
    with pytest.raises(ValueError, match="unknown attention backend 'flsh'"):
        tiny_dmft(attention="flsh")


def test_gpu_kernels_are_not_offered_on_cpu():
    assert {"flash", "fused_jvp"}.isdisjoint(available_backends(torch.device("cpu")))
    assert available_backends(torch.device("cpu"))[:2] == ["sdpa", "math"]


def test_auto_on_cuda_picks_the_fused_jvp_kernel_for_tangents_and_sdpa_or_flash_otherwise():
    pytest.importorskip("triton")
    cuda = torch.device("cuda")  # choose() only asks each backend whether it runs on this device type
    assert choose(needs_jvp=True, device=cuda).name == "fused_jvp"
    assert choose(needs_jvp=False, device=cuda).name in ("flash", "sdpa")
    assert choose(needs_jvp=True, device=torch.device("cpu")).name == "math"


def test_model_compile_key_compiles_in_place_and_the_ema_copy_stays_eager():
    import copy

    from hydra.utils import instantiate

    from dmf.models.compile import _CompiledCall
    from tests.helpers import compose_config

    cfg = compose_config(["experiment=digits_dmf", "model.compile=true"])
    net = instantiate(cfg.model)
    assert isinstance(net._compiled_call_impl, _CompiledCall)
    assert all("_orig_mod" not in k for k in net.state_dict())  # checkpoint names unchanged
    assert copy.deepcopy(net)._compiled_call_impl is None  # else the EMA copy would run the live weights


@pytest.mark.slow
def test_compiled_dmft_gives_the_eager_loss_and_gradients_on_the_same_draws():
    from dmf.models.compile import compile_network
    from dmf.objectives import DMFLoss, LogitNormalTime, ModelGuidance

    torch.manual_seed(0)
    net = tiny_dmft()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    loss_fn = DMFLoss(LogitNormalTime(), ModelGuidance(0.6, 0.0, 0.7), cfg_prob=0.1)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 5, 9])
    results, logs = [], []
    for compiled in (False, True):
        if compiled:  # aot_eager: dynamo + AOT autograd as with inductor, without minutes of C++ codegen on a CPU
            compile_network(net, backend="aot_eager", log=logs.append)
        net.zero_grad()
        torch.manual_seed(7)
        loss, _ = loss_fn(net, x, y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (l0, g0), (l1, g1) = results
    assert logs and "model.compile" in logs[0]  # compile time is reported
    assert torch.allclose(l1, l0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


class _MarkedJVPAttention(torch.autograd.Function):
    """Math attention whose custom jvp returns 3x the true tangent: shows which rule a JVP pass ran."""

    @staticmethod
    def forward(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(*inputs)

    @staticmethod
    def jvp(ctx, q_t, k_t, v_t):
        q, k, v = ctx.saved_tensors
        fn = lambda q_, k_, v_: torch.softmax(q_ @ k_.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v_  # noqa: E731
        return 3 * jvp(fn, (q, k, v), (q_t, k_t, v_t))[1]


@pytest.mark.parametrize("where", ["network", "jvp_call"])
def test_which_jvp_rule_runs_under_model_compile(where, monkeypatch):
    """The fused kernel reaches torch.func.jvp only through its autograd.Function's custom `jvp`. A compiled network
    called inside an eager torch.func.jvp (model.compile=true) still runs it. Compiling the torch.func.jvp call
    itself does not: dynamo (torch 2.14) differentiates the Function's forward instead, silently, which for a Triton
    forward cannot work; that is why the objective's JVP stays eager. If a torch upgrade changes either, this fails."""
    from dmf.models.attention.registry import _BACKENDS, AttentionBackend
    from dmf.models.compile import compile_network

    monkeypatch.setitem(_BACKENDS, "marked", AttentionBackend("marked", _MarkedJVPAttention.apply, True,
                                                              lambda device: True, priority=-1))
    torch.manual_seed(0)
    net = tiny_dmft()
    for p in net.parameters():  # the zero-initialised gates would hide the attention's tangent
        torch.nn.init.normal_(p, std=0.2)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0.7, 0.4]), torch.tensor([1, 2])
    q = torch.randn(2, 2, 5, 8, dtype=torch.float64)
    q_t = torch.randn_like(q)
    true_t = jvp(lambda q_: get_backend("math").fn(q_, q_, q_), (q,), (q_t,))[1]

    def attention_tangent(fn):
        return jvp(lambda q_: fn(q_, q_, q_), (q,), (q_t,))[1]

    def du_dt(n):
        return jvp(lambda a, b: n(a, b, 0.5 * b, y), (x, t), (torch.randn_like(x), torch.ones_like(t)))[1]

    set_attention_backend(net, "math")
    torch.manual_seed(1)
    plain = du_dt(net)
    set_attention_backend(net, "marked")
    assert torch.allclose(attention_tangent(_MarkedJVPAttention.apply), 3 * true_t)  # eager: the custom rule
    torch.manual_seed(1)
    eager = du_dt(net)
    assert (eager - plain).abs().max() > 0.1 * plain.abs().max()  # the marked rule shows in the network's du/dt
    if where == "network":
        compile_network(net, backend="aot_eager", log=lambda _: None)
        torch.manual_seed(1)
        assert torch.equal(du_dt(net), eager)
    else:
        compiled = torch.compile(attention_tangent, backend="aot_eager", fullgraph=True)
        assert torch.allclose(compiled(_MarkedJVPAttention.apply), true_t)  # the custom jvp was bypassed
