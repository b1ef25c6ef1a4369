"""The MeanFlow baseline: starts as the SiT it is initialised from, for every (t, r); DMF training on digits.
(Its JVP is checked beside DMFT's in test_jvp_and_attention.py.)"""
import pytest
import torch
from hydra.utils import instantiate

from dmf.config import ConfigError, validate
from dmf.models import CheckpointMismatch, load_pretrained
from dmf.train.entry import train
from tests.helpers import compose_config, tiny_mf, tiny_sit


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


def test_mf_model_config_builds_and_dmf_needs_a_flow_map_model():
    cfg = compose_config(["experiment=digits_mf"])
    validate(cfg)
    assert cfg.model.name == "MF-T/2" and cfg.objective._target_.endswith("DMFLoss")
    # DMFT's split does not exist in MF: a leftover dmf_depth is an error, not silently ignored
    with pytest.raises(Exception, match="model.dmf_depth=4 does not apply to MF-T/2"):
        instantiate(compose_config(["experiment=digits_dmf", "model=mf", "model.name=MF-T/2"]).model)
    with pytest.raises(ConfigError, match="objective=dmf needs a flow-map model"):
        validate(compose_config(["experiment=digits_dmf", "model=sit", "model.name=SiT-T/2"]))


@pytest.mark.slow
def test_mf_trains_with_the_dmf_objective_on_digits_from_a_flow_checkpoint(tmp_path):
    tiny = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "data.global_batch_size=16",
            "callbacks.progress.refresh_rate=0", "trainer.log_every_n_steps=1"]
    flow = compose_config(["experiment=digits_flow", f"run_dir={tmp_path / 'flow'}", "trainer.max_steps=2", *tiny])
    train(flow)
    ckpt = tmp_path / "flow" / "checkpoints" / "last.ckpt"
    cfg = compose_config(["experiment=digits_mf", f"ckpt={ckpt}",
                          f"run_dir={tmp_path / 'mf'}", "trainer.max_steps=3", "guidance.omega=0.6", *tiny])
    validate(cfg)
    module = train(cfg)
    assert type(module.net).__name__ == "MeanFlowTransformer" and module.trainer.global_step == 3
    logged = (tmp_path / "mf" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss_mf" in logged
    # three DMF steps moved emb_h away from zero: the MF term's gradient reaches the (t - r) embedding
    assert module.net.h_embedder.mlp[2].weight.abs().sum() > 0
