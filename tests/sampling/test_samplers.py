import pytest
import torch

from dmf.models import DMFT
from dmf.sampling import SAMPLERS, build_sampler, guided_output, time_grid
from tests.helpers import load_compat, reference_kwargs, rel_err


def test_flow_map_euler_reproduces_reference_samples():
    ref = load_compat("dmft_tiny.pt")
    net = DMFT(dmf_depth=ref["config"]["dmf_depth"], **reference_kwargs(ref["config"])).double()
    net.load_state_dict(ref["state_dict"])
    s = ref["sampler"]
    assert len(s["euler"]) >= 1
    for key, expected in s["euler"].items():
        kw = dict(kv.split("=") for kv in key.split(","))
        sampler = build_sampler("euler", steps=int(kw["steps"]), shift=float(kw["shift"]),
                                cfg_scale=float(kw["cfg"]), g_max=float(kw["g_max"]))
        assert rel_err(sampler(net, s["z"], s["y"]), expected) < 1e-6, key


def test_shifted_grid_matches_reference():
    ref = load_compat("dmft_tiny.pt")["sampler"]["tsteps_shift1.5_n4"]
    assert torch.allclose(time_grid(4, 1.5), ref)


class PointMass(torch.nn.Module):
    """Exact flow map and velocity when all data sit at 0 on the linear path: x_t = t e, u = v = x / t."""
    num_classes = 10

    def forward(self, x, t, r, y):
        return x / t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 3])
def test_every_sampler_lands_on_the_data_for_an_exact_model(name, steps):
    torch.manual_seed(0)
    noise = torch.randn(16, 1, 4, 4, dtype=torch.float64)
    kw = {"gamma": 0.5} if name == "gamma" else {}
    out = build_sampler(name, steps=steps, **kw)(PointMass(), noise, torch.zeros(16, dtype=torch.long))
    assert out.abs().max() < 1e-12


class ConstantVelocity(torch.nn.Module):
    num_classes = 10

    def forward(self, x, t, r, y):
        return torch.ones_like(x)


@pytest.mark.parametrize("name", ["euler", "flow_euler"])
def test_unguided_samplers_still_move_x(name):
    """The reference's flow Euler update sat inside the guidance branch: without guidance x never moved."""
    noise = torch.zeros(2, 1, 4, 4)
    out = build_sampler(name, steps=4, cfg_scale=1.0)(ConstantVelocity(), noise, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(out, torch.full_like(noise, -1.0))


def test_heun_is_more_accurate_than_euler_on_a_linear_ode():
    class Linear(torch.nn.Module):  # dx/dt = x, from t = 1 to 0: x(0) = x(1) / e
        num_classes = 1

        def forward(self, x, t, r, y):
            return x

    x1, y = torch.ones(1, 1, 2, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    exact = x1 / torch.e
    euler = build_sampler("flow_euler", steps=8)(Linear(), x1, y)
    heun = build_sampler("flow_heun", steps=8)(Linear(), x1, y)
    assert (heun - exact).abs().max() < 0.2 * (euler - exact).abs().max()


def test_gamma_sampler_renoises_with_the_variance_the_path_needs():
    """Data at 0: x_t = t e, so after a step to t_next the samples must have std exactly t_next."""
    torch.manual_seed(0)
    sampler = build_sampler("gamma", steps=2, gamma=0.7)
    x = 1.0 * torch.randn(200_000, 1, 1, 1, dtype=torch.float64)
    out = sampler.step(PointMass(), x, 1.0, 0.5, torch.zeros(len(x), dtype=torch.long), torch.randn_like(x))
    assert abs(out.std().item() - 0.5) < 0.005


def test_stochastic_samplers_are_reproducible_with_given_noise():
    torch.manual_seed(0)
    noise, y = torch.randn(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    step_noise = torch.randn(3, 4, 1, 4, 4)
    net = ConstantVelocity()
    for name in ("restart", "gamma", "flow_sde"):
        s = build_sampler(name, steps=3, **({"gamma": 0.5} if name == "gamma" else {}))
        assert torch.equal(s(net, noise, y, step_noise), s(net, noise, y, step_noise))


class LabelNet(torch.nn.Module):
    """Output = the label (the null class is 10): guided outputs are easy to compute by hand."""
    num_classes = 10

    def forward(self, x, t, r, y):
        return y.to(x.dtype).view(-1, 1, 1, 1).expand_as(x)


def test_cfg_only_inside_the_interval():
    x, y = torch.zeros(2, 1, 2, 2), torch.tensor([2, 4])
    inside = guided_output(LabelNet(), x, 0.5, 0.2, y, cfg_scale=2.0, g_min=0.0, g_max=0.7)
    assert torch.allclose(inside[:, 0, 0, 0], torch.tensor([10 + 2 * (2 - 10.0), 10 + 2 * (4 - 10.0)]))
    outside = guided_output(LabelNet(), x, 0.8, 0.2, y, cfg_scale=2.0, g_min=0.0, g_max=0.7)
    assert torch.allclose(outside[:, 0, 0, 0], torch.tensor([2.0, 4.0]))


def test_heun_decides_guidance_once_per_step_at_its_start():
    """Grid 1 -> 0.5 -> 0, interval [0.6, 1]: the first step's corrector (at t = 0.5) is guided like its
    predictor (decided at t = 1); the last step is plain Euler at 0.5, outside the interval."""
    s = build_sampler("flow_heun", steps=2, cfg_scale=2.0, g_min=0.6, g_max=1.0)
    y = torch.tensor([2, 4])
    out = s(LabelNet(), torch.zeros(2, 1, 1, 1), y)[:, 0, 0, 0]
    guided = 10 + 2.0 * (y - 10.0)
    expected = -0.5 * 0.5 * (guided + guided) - 0.5 * y  # step 1: trapezoid of two guided; step 2: Euler, unguided
    assert torch.allclose(out, expected)


def test_sampler_options_are_validated():
    with pytest.raises(ValueError, match="sampler.name='eulr' is not one of"):
        build_sampler("eulr")
    with pytest.raises(ValueError, match="sampler.steps=0"):
        build_sampler("euler", steps=0)
    with pytest.raises(ValueError, match="only applies to sampler.name=gamma"):
        build_sampler("euler", gamma=0.3)
    with pytest.raises(ValueError, match=r"sampler.gamma=1.5 must lie in \[0, 1\]"):
        build_sampler("gamma", gamma=1.5)
