import pytest
import torch

from dmf.objectives import CosinePath, LinearPath, LogitNormalTime, adaptive_loss, get_path
from tests.helpers import load_compat, rel_err


def test_adaptive_loss_matches_reference_per_sample():
    ref = load_compat("formulas.pt")["adaptive_loss"]
    ours = adaptive_loss(ref["pred"], ref["target"], ref["logvar"])
    # the reference broadcast to (B,1,1,B); the per-sample losses are its diagonal
    assert rel_err(ours, torch.diagonal(ref["loss"].squeeze())) < 1e-6


def test_adaptive_loss_over_all_pairs_matches_the_released_broadcast():
    ref = load_compat("formulas.pt")["adaptive_loss"]
    ours = adaptive_loss(ref["pred"], ref["target"], ref["logvar"], pairs="all")
    # value i pairs log-variance i with every error j: row i of the released (B,1,1,B) matrix
    assert rel_err(ours, ref["loss"].squeeze().mean(1)) < 1e-6
    assert abs(ours.mean() - ref["loss"].mean()) < 1e-6 * abs(ref["loss"].mean())
    with pytest.raises(ValueError, match="objective.logvar_pairs='rows' is not one of diagonal | all"):
        adaptive_loss(ref["pred"], ref["target"], ref["logvar"], pairs="rows")


def test_logit_normal_map_matches_reference():
    ref = load_compat("formulas.pt")["logit_normal"]
    assert rel_err(LinearPath().time_from_normal(ref["z"]), ref["t"]) < 1e-6


@pytest.mark.parametrize("path", [LinearPath(), CosinePath()])
def test_velocity_is_the_time_derivative_and_predict_inverts(path):
    x, e = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    x_t, v = path.interpolate(x, e, t)
    h = 1e-6
    fd = (path.interpolate(x, e, t + h)[0] - path.interpolate(x, e, t - h)[0]) / (2 * h)
    assert torch.allclose(v, fd, atol=1e-8)
    x0, e0 = path.predict(x_t, v, t)
    assert torch.allclose(x0, x) and torch.allclose(e0, e)


def test_cosine_time_proposal_is_logit_normal_in_log_snr():
    z = torch.linspace(-3, 3, 7, dtype=torch.float64)
    a, s = CosinePath().alpha_sigma(CosinePath().time_from_normal(z))[:2]
    assert torch.allclose(torch.log(s / a), z)


def test_time_proposal_statistics():
    torch.manual_seed(0)
    tp = LogitNormalTime(P_mean=-0.4, P_std=0.8, P_mean_t=0.4, P_std_t=1.0, P_mean_r=-1.2, P_std_r=0.5)
    n = 200_000
    logit = lambda p: torch.log(p / (1 - p))
    t_fm = tp.sample_fm(n).double()
    assert abs(logit(t_fm).mean() + 0.4) < 0.01 and abs(logit(t_fm).std() - 0.8) < 0.01
    t, r = tp.sample_tr(n)
    assert torch.all(t >= r) and torch.all((0 < r) & (t < 1))
    # t = max(a, b), r = min(a, b): together they hold one draw of each proposal
    both = torch.cat([logit(t.double()), logit(r.double())])
    assert abs(both.mean() - (0.4 - 1.2) / 2) < 0.01
    # with P_mean_t well above P_mean_r, t mostly comes from the `t` proposal
    assert abs(logit(t.double()).median() - 0.4) < 0.1


def test_bad_time_settings_fail_clearly():
    with pytest.raises(ValueError, match="time.path='cos' is not one of"):
        get_path("cos")
    with pytest.raises(ValueError, match="time.P_std=-1"):
        LogitNormalTime(P_std=-1)
