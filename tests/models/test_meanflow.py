"""The MeanFlow baseline: starts as the SiT it is initialised from, for every (t, r); JVP; DMF training on digits."""
import pytest
import torch
from torch.func import jvp

from dmf.config import ConfigError, validate
from dmf.models import CheckpointMismatch, build_model, load_pretrained
from dmf.train.entry import train
from tests.helpers import compose_config, tiny_sit

TINY = dict(input_size=8, in_channels=1, num_classes=10, depth=3, hidden_size=32, num_heads=2)


def tiny_mf(**overrides):
    return build_model("MF-T/2", **{**TINY, **overrides})


def randomised(net):
    """The DiT init zeroes the output layers: randomise every weight so equalities can fail."""
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return net


def test_mf_from_sit_weights_equals_the_sit_for_any_t_and_r(tmp_path):
    torch.manual_seed(0)
    sit = randomised(tiny_sit(z_dims=[16], repa_depth=2)).double()
    path = tmp_path / "sit.pt"
    torch.save({"ema": sit.state_dict()}, path)
    mf = tiny_mf().double()
    report = load_pretrained(mf, path)
    assert report["dropped"] == sorted(k for k in sit.state_dict() if k.startswith("projectors."))
    assert report["initialised"] == sorted(k for k in mf.state_dict() if k.startswith(("h_embedder.", "logvar_linear.")))
    # emb_h's first layer is random (it can learn), its last layer zero (it starts silent)
    assert mf.h_embedder.mlp[0].weight.abs().sum() > 0 and mf.h_embedder.mlp[2].weight.abs().sum() == 0

    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 3, 9, 10])
    t = torch.tensor([0.9, 0.5, 0.3, 1.0], dtype=torch.float64)
    for r in (t, torch.tensor([0.1, 0.5, 0.0, 0.2], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)):
        u, lv = mf(x, t, r, y, return_logvar=True)
        assert torch.allclose(u, sit(x, t, t, y), rtol=1e-12, atol=1e-12)
        assert torch.all(lv == 0)
    # a trained emb_h makes r matter: the equality above is not vacuous
    torch.nn.init.normal_(mf.h_embedder.mlp[2].weight, std=0.2)
    assert not torch.allclose(mf(x, t, torch.zeros_like(t), y), sit(x, t, t, y), atol=1e-6)


def test_mf_does_not_take_a_dmft_shaped_mismatch_silently():
    with pytest.raises(CheckpointMismatch, match="wrong shape: pos_embed"):
        load_pretrained(tiny_mf(input_size=16), tiny_sit().state_dict())


def test_mf_jvp_matches_central_finite_differences():
    torch.manual_seed(1)
    net = randomised(tiny_mf(qk_norm=True)).double()
    x, v = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t, r = torch.tensor([0.9, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.2, 0.5, 0.0], dtype=torch.float64)
    y = torch.tensor([1, 2, 10])
    _, du_dt = jvp(lambda x_, t_, r_: net(x_, t_, r_, y), (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    eps = 1e-6
    fd = (net(x + eps * v, t + eps, r, y) - net(x - eps * v, t - eps, r, y)) / (2 * eps)
    assert du_dt.abs().max() > 1e-3
    assert torch.allclose(du_dt, fd, rtol=1e-5, atol=1e-7)


def test_mf_model_config_builds_and_dmf_needs_a_flow_map_model():
    cfg = compose_config(["experiment=digits_dmf", "model=mf", "model.name=MF-T/2"])
    validate(cfg)
    with pytest.raises(ConfigError, match="objective=dmf needs a flow-map model"):
        validate(compose_config(["experiment=digits_dmf", "model=sit", "model.name=SiT-T/2"]))


@pytest.mark.slow
def test_mf_trains_with_the_dmf_objective_on_digits_from_a_flow_checkpoint(tmp_path):
    tiny = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "data.datamodule.batch_size=16",
            "callbacks.progress.refresh_rate=0", "trainer.log_every_n_steps=1"]
    flow = compose_config(["experiment=digits_flow", f"run_dir={tmp_path / 'flow'}", "trainer.max_steps=2", *tiny])
    train(flow)
    ckpt = tmp_path / "flow" / "checkpoints" / "last.ckpt"
    cfg = compose_config(["experiment=digits_dmf", "model=mf", "model.name=MF-T/2", f"ckpt={ckpt}",
                          f"run_dir={tmp_path / 'mf'}", "trainer.max_steps=3", "guidance.omega=0.6", *tiny])
    validate(cfg)
    module = train(cfg)
    assert type(module.net).__name__ == "MeanFlowTransformer" and module.trainer.global_step == 3
    logged = (tmp_path / "mf" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss_mf" in logged
    # three DMF steps moved emb_h away from zero: the MF term's gradient reaches the (t - r) embedding
    assert module.net.h_embedder.mlp[2].weight.abs().sum() > 0
