"""The fused JVP attention kernel (dmf/kernels) against float64 math attention: output, tangent, q/k/v gradients,
and a DMF network / DMF loss through it. On a CPU the Triton kernels run in the interpreter (small shapes)."""
import pytest
import torch
from torch.func import jvp

pytest.importorskip("triton")

from dmf.kernels.jvp_attention import jvp_attention  # noqa: E402
# imported now, while conftest's TRITON_INTERPRET=1 holds: @triton.jit helpers take the mode when they are defined,
# and a test that unsets the variable must not be the first to import them
from dmf.kernels import triton_attention  # noqa: E402,F401
from dmf.models.attention import set_attention_backend  # noqa: E402
from dmf.objectives import DMFLoss, LogitNormalTime, ModelGuidance  # noqa: E402
from tests.helpers import rel_err, tiny_dmft  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def math64(q, k, v):
    q, k, v = q.double(), k.double(), v.double()
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def qkv(shape, n=3, dtype=torch.float32, scale=1.0):
    return [(torch.randn(shape, dtype=torch.float64) * scale).to(DEVICE, dtype) for _ in range(n)]


# L = 37 (not a multiple of any block), d = 72 (DMF-XL's head dim, padded inside the kernel), and a tiny case
SHAPES = [(1, 2, 37, 72), (2, 2, 64, 32), (1, 1, 3, 8)]


@pytest.mark.parametrize("shape", SHAPES)
def test_output_tangent_and_gradients_match_float64_math(shape):
    torch.manual_seed(0)
    q, k, v, q_t, k_t, v_t = qkv(shape, 6, scale=1.5)  # scale: peakier softmax than unit variance
    out, tangent = jvp(jvp_attention, (q, k, v), (q_t, k_t, v_t))
    ref, ref_tangent = jvp(math64, (q, k, v), (q_t, k_t, v_t))
    assert out.dtype == torch.float32 and out.shape == shape
    assert rel_err(out.double(), ref) < 1e-5
    assert rel_err(tangent.double(), ref_tangent) < 1e-5

    grad_out = torch.randn(shape, dtype=torch.float64).to(DEVICE)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    grads = torch.autograd.grad((jvp_attention(*leaves) * grad_out).sum(), leaves)
    leaves64 = [t.double().requires_grad_() for t in (q, k, v)]
    ref_grads = torch.autograd.grad((math64(*leaves64) * grad_out).sum(), leaves64)
    for name, g, ref_g in zip("qkv", grads, ref_grads):
        assert rel_err(g.double(), ref_g) < 1e-5, name


def test_inputs_without_tangent_count_as_zero_tangents():
    torch.manual_seed(1)
    q, k, v, k_t = qkv((1, 2, 37, 72), 4)
    _, tangent = jvp(lambda k_: jvp_attention(q, k_, v), (k,), (k_t,))
    _, ref = jvp(lambda k_: math64(q, k_, v), (k,), (k_t,))
    assert rel_err(tangent.double(), ref) < 1e-5


def test_forward_mode_dual_tensors_reach_the_kernel():
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(2)
    q, k, v, q_t = qkv((1, 2, 37, 72), 4)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(jvp_attention(fwAD.make_dual(q, q_t), k, v)).tangent
    _, ref = jvp(lambda q_: math64(q_, k, v), (q,), (q_t,))
    assert rel_err(tangent.double(), ref) < 1e-5


def test_mixed_input_dtypes_compute_in_the_promoted_dtype():
    # qk-norm returns fp32 q, k beside a bf16 v; without autocast the kernel promotes, like torch's matmul
    torch.manual_seed(3)
    q, k, v = qkv((1, 2, 37, 72))
    out = jvp_attention(q, k, v.to(torch.bfloat16))
    assert out.dtype == torch.float32
    assert rel_err(out.double(), math64(q, k, v.to(torch.bfloat16))) < 1e-5


@pytest.mark.parametrize("case, error, match", [
    (lambda: qkv((1, 2, 5, 300)), ValueError, "head dims up to 256"),
    (lambda: [*qkv((1, 2, 5, 8), 2), *qkv((1, 2, 6, 8), 1)], ValueError, "one shape"),
    (lambda: qkv((1, 2, 5, 8), dtype=torch.float64), ValueError, "attention.backend=math"),
])
def test_unsupported_inputs_raise_a_clear_error(case, error, match):
    with pytest.raises(error, match=match):
        jvp_attention(*case())


@pytest.mark.skipif(CUDA, reason="checks the CPU refusal")
def test_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="runs on CUDA.*attention.backend=auto"):
        jvp_attention(*qkv((1, 1, 4, 8)))


def _random_dmft():
    torch.manual_seed(0)
    net = tiny_dmft(qk_norm=True).to(DEVICE)
    for p in net.parameters():  # the DiT init zeroes the output layers; randomise so the comparison can fail
        torch.nn.init.normal_(p, std=0.2)
    return net


def _grads(net):
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in net.parameters()]


def test_dmft_jvp_and_parameter_gradients_match_the_math_backend():
    net = _random_dmft()
    x, v = (torch.randn(3, 1, 8, 8, device=DEVICE) for _ in range(2))
    t, r = torch.tensor([0.9, 0.5, 0.3], device=DEVICE), torch.tensor([0.2, 0.5, 0.0], device=DEVICE)
    y = torch.tensor([1, 2, 10], device=DEVICE)
    results = {}
    for backend in ("math", "fused_jvp"):
        set_attention_backend(net, backend)
        net.zero_grad()
        u, du_dt = jvp(lambda x_, t_, r_: net(x_, t_, r_, y), (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
        (u * du_dt.detach()).sum().backward()  # the DMF pattern: gradients through the primal only
        results[backend] = (u.detach(), du_dt.detach(), _grads(net))
    (u0, d0, g0), (u1, d1, g1) = results["math"], results["fused_jvp"]
    assert d0.abs().max() > 1e-2
    assert rel_err(u1, u0) < 1e-5 and rel_err(d1, d0) < 1e-5
    for a, b in zip(g1, g0):
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-6


def test_dmf_loss_through_the_fused_kernel_equals_the_math_loss():
    net = _random_dmft()
    loss_fn = DMFLoss(LogitNormalTime(), ModelGuidance(0.6, 0.0, 0.7), cfg_prob=0.1)
    x, y = torch.randn(4, 1, 8, 8, device=DEVICE), torch.tensor([0, 3, 5, 9], device=DEVICE)
    losses = {}
    for backend in ("math", "fused_jvp"):
        set_attention_backend(net, backend)
        torch.manual_seed(7)  # the same label drops, times and noises for both
        losses[backend], _ = loss_fn(net, x, y)
    assert torch.allclose(losses["fused_jvp"], losses["math"], rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("length", [256, 257, 1024])
def test_half_precision_on_gpu_matches_float64_math_to_half_tolerance(dtype, length):
    torch.manual_seed(4)
    q, k, v, q_t, k_t, v_t = qkv((2, 4, length, 72), 6, dtype=dtype)
    out, tangent = jvp(jvp_attention, (q, k, v), (q_t, k_t, v_t))
    ref, ref_tangent = jvp(math64, (q, k, v), (q_t, k_t, v_t))
    assert out.dtype == dtype
    assert rel_err(out.double(), ref) < 2e-2 and rel_err(tangent.double(), ref_tangent) < 3e-2
