import pytest
import torch

from dmf.build import build_guidance
from dmf.config import ConfigError
from dmf.objectives import DMFLoss, DistillGuidance, FlowMatchingLoss, LogitNormalTime, ModelGuidance, NoGuidance
from tests.helpers import compose_config, tiny_dmft, tiny_sit


class LabelNet(torch.nn.Module):
    """u = y (as a float), so cond - uncond = y - null is easy to check."""
    num_classes = 10

    def forward(self, x, t, r, y, **_):
        return y.to(x.dtype).view(-1, 1, 1, 1).expand_as(x).clone()


def test_model_guidance_applies_only_inside_interval_and_to_kept_labels():
    g = ModelGuidance(omega=0.5, g_min=0.2, g_max=0.7)
    x, v = torch.zeros(4, 1, 2, 2), torch.ones(4, 1, 2, 2)
    t = torch.tensor([0.1, 0.5, 0.5, 0.9])
    y = torch.tensor([3, 3, 10, 3])
    dropped = torch.tensor([False, False, True, False])
    out = g(LabelNet(), x, t, y, dropped, v)
    expected = torch.tensor([1.0, 1 + 0.5 * (3 - 10), 1.0, 1.0])
    assert torch.allclose(out[:, 0, 0, 0], expected)


def test_distill_guidance_uses_the_teacher_everywhere():
    g = DistillGuidance(LabelNet(), omega=2.0, g_min=0.0, g_max=0.5)
    x, v = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 99.0)
    out = g(None, x, torch.tensor([0.3, 0.8]), torch.tensor([4, 4]), torch.tensor([False, False]), v)
    # inside: uncond + 2 (cond - uncond) = 10 + 2 (4 - 10) = -2; outside: the teacher's conditional velocity 4
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-2.0, 4.0]))


def test_guidance_errors():
    with pytest.raises(ConfigError, match="guidance.teacher.ckpt=<SiT checkpoint"):
        build_guidance(compose_config(["experiment=digits_dmf", "guidance=distill"]))
    with pytest.raises(ValueError, match="g_min <= g_max"):
        ModelGuidance(omega=0.6, g_min=0.8, g_max=0.2)


def test_dmf_loss_trains_all_parts_and_reports_terms():
    torch.manual_seed(0)
    net = tiny_dmft()
    loss_fn = DMFLoss(LogitNormalTime(), ModelGuidance(0.6, 0.0, 0.7), cfg_prob=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss, logs = loss_fn(net, x, y)
    assert set(logs) == {"loss_fm", "loss_mf", "mse_fm", "mse_mf"}
    assert torch.isclose(loss, 0.5 * (logs["loss_fm"] + logs["loss_mf"]))
    loss.backward()
    # the output layer is zero-initialised, so only it and the log-variance head get gradient at step 0
    assert net.final_layer.linear.weight.grad.abs().sum() > 0
    assert net.logvar_linear.weight.grad.abs().sum() > 0


def test_meanflow_target_uses_the_jvp():
    """For u(x, t, r) = x * (1 + t - r) the MeanFlow target is v + (r - t)(d_x u v + d_t u) = v + (r - t)((1+t-r) v + x)."""
    class Analytic(torch.nn.Module):
        num_classes = 10

        def forward(self, x, t, r, y, return_logvar=False):
            u = x * (1 + t - r).view(-1, 1, 1, 1)
            return (u, torch.zeros(len(x), 1, 1, 1)) if return_logvar else u

    loss_fn = DMFLoss(LogitNormalTime(), NoGuidance(), cfg_prob=0.0)
    x = torch.randn(64, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    draws = loss_fn.draw(64, x, torch.Generator().manual_seed(1))
    _, logs = loss_fn(Analytic(), x, torch.zeros(64, dtype=torch.long), draws=draws)
    # rebuild the target by hand from the same draws
    t, r, e = draws["t"], draws["r"], draws["e_mf"]
    b = lambda s: s.view(-1, 1, 1, 1)
    x_t, v = (1 - b(t)) * x + b(t) * e, e - x
    u = x_t * b(1 + t - r)
    u_tgt = v + b(r - t) * (b(1 + t - r) * v + x_t)
    assert torch.isclose(logs["mse_mf"], (u - u_tgt).pow(2).mean(), rtol=1e-10)


def test_flow_matching_with_repa_aligns_projected_features():
    torch.manual_seed(0)
    net = tiny_sit(z_dims=[12], repa_depth=2)
    encoder = lambda x: [torch.randn(x.shape[0], 16, 12)]
    fm = FlowMatchingLoss(LogitNormalTime(), repa_weight=0.5, encoder=encoder)
    loss, logs = fm(net, torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    assert -1 <= logs["repa"] <= 1 and logs["repa"] != 0
    assert torch.isclose(loss, logs["mse"] + 0.5 * logs["repa"])
    with pytest.raises(ValueError, match="needs objective.encoder"):
        FlowMatchingLoss(LogitNormalTime(), repa_weight=0.5)
    with pytest.raises(ValueError, match="set guidance=none"):
        FlowMatchingLoss(LogitNormalTime(), guidance=ModelGuidance(0.6))


def test_distill_default_omega_is_the_cfg_scale_that_model_guidance_reaches():
    """MG's target v + w (v(y) - v(null)) is at its fixed point when the student is CFG with scale 1 / (1 - w);
    the distill preset's omega is that scale on the teacher, so the two presets aim at the same target."""
    from tests.helpers import compose_config

    w = compose_config(["experiment=dmf_xl_256", "guidance=mg"]).guidance.omega
    scale = compose_config(["experiment=dmf_xl_256", "guidance=distill"]).guidance.omega
    assert scale == pytest.approx(1 / (1 - w))

    class Teacher(LabelNet):  # v(y) = y, v(null) = 10
        pass

    class FixedPointStudent(LabelNet):  # CFG of the teacher with scale 1 / (1 - w)
        def forward(self, x, t, r, y, **_):
            return 10 + (super().forward(x, t, r, y) - 10) * torch.where(y == 10, 0.0, 1 / (1 - w)).view(-1, 1, 1, 1)

    x, t, y = torch.zeros(3, 1, 2, 2), torch.full((3,), 0.5), torch.tensor([1, 4, 7])
    v = y.float().view(-1, 1, 1, 1).expand_as(x)  # the conditional velocity the data gives, on average
    kept = torch.zeros(3, dtype=torch.bool)
    mg = ModelGuidance(w, 0.0, 0.7)(FixedPointStudent(), x, t, y, kept, v)
    distill = DistillGuidance(Teacher(), scale, 0.0, 0.7)(FixedPointStudent(), x, t, y, kept, v)
    torch.testing.assert_close(mg, distill)


def test_logvar_pairs_key_reaches_the_loss():
    """objective.logvar_pairs as a user types it changes the loss on the same batch and draws."""
    from dmf.build import build_objective
    from tests.helpers import compose_config

    class Spread(torch.nn.Module):  # u = 0; log-variances spread over samples, so the pairing matters
        num_classes = 10

        def forward(self, x, t, r, y, return_logvar=False):
            u = torch.zeros_like(x)
            return (u, torch.linspace(-6, 2, len(x)).view(-1, 1, 1, 1)) if return_logvar else u

    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 1, 8).view(-1, 1, 1, 1)
    losses = {}
    for pairs in ("diagonal", "all"):
        objective = build_objective(compose_config(["experiment=digits_dmf", "guidance=none",
                                                    f"objective.logvar_pairs={pairs}"]))
        draws = objective.draw(8, x, torch.Generator().manual_seed(1))
        losses[pairs] = objective(Spread(), x, torch.arange(8), draws=draws)[0].item()
    assert abs(losses["diagonal"] - losses["all"]) > 1e-3 * abs(losses["diagonal"])
