import pytest
import torch

from dmf.models import SIT_TO_DMFT, CheckpointMismatch, build_model, load_pretrained, load_weights
from dmf.models.hub import resolve_path
from tests.helpers import tiny_dmft, tiny_sit


def test_sit_checkpoint_initialises_dmft_with_explicit_policy(tmp_path):
    sit = tiny_sit(z_dims=[16], repa_depth=2)
    for p in sit.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "sit.pt"
    torch.save({"ema": sit.state_dict(), "model": {}}, path)
    dmft = tiny_dmft()
    report = load_weights(dmft, resolve_path(path), **SIT_TO_DMFT)
    assert report["dropped"] == sorted(k for k in sit.state_dict() if k.startswith("projectors."))
    assert report["initialised"] == ["logvar_linear.bias", "logvar_linear.weight"]
    assert torch.equal(dmft.blocks[1].attn.qkv.weight, sit.blocks[1].attn.qkv.weight)
    assert dmft.logvar_linear.weight.abs().sum() == 0


def test_mismatch_names_the_keys_instead_of_loading_silently():
    sit = tiny_sit(z_dims=[16], repa_depth=2)
    with pytest.raises(CheckpointMismatch, match="unexpected: projectors.0.0.bias"):
        load_weights(tiny_dmft(), sit.state_dict())  # no policy: projectors are not expected
    with pytest.raises(CheckpointMismatch, match="missing: blocks.0.attn.k_norm.scale"):
        load_weights(tiny_dmft(qk_norm=True), tiny_dmft().state_dict())
    with pytest.raises(CheckpointMismatch, match="wrong shape: pos_embed"):
        load_weights(tiny_dmft(input_size=16), tiny_dmft().state_dict())


def test_lightning_checkpoint_prefers_ema_weights():
    net, ema = tiny_dmft(), tiny_dmft()
    torch.nn.init.constant_(ema.final_layer.linear.bias, 3.0)
    sd = {**{f"net.{k}": v for k, v in net.state_dict().items()}, **{f"ema_net.{k}": v for k, v in ema.state_dict().items()}}
    target = tiny_dmft()
    load_weights(target, {"state_dict": sd})
    assert torch.all(target.final_layer.linear.bias == 3.0)
    load_weights(target, {"state_dict": sd}, prefer="model")
    assert torch.all(target.final_layer.linear.bias == 0.0)


def test_model_names_are_parsed_with_one_clear_error():
    with pytest.raises(ValueError, match="family in .*size in .*patch in"):
        build_model("DMFT-XXL/2", input_size=8, in_channels=1, num_classes=10, dmf_depth=2)
    with pytest.raises(ValueError, match="dmf_depth=6 must satisfy 0 < dmf_depth < depth=6"):
        build_model("DMFT-T/2", input_size=8, in_channels=1, num_classes=10, dmf_depth=6)
    with pytest.raises(ValueError, match="not divisible by patch size 4"):
        build_model("SiT-T/4", input_size=10, in_channels=1, num_classes=10)


def test_sit_without_qk_norm_initialises_a_qk_norm_dmft_with_scales_at_one(tmp_path, capsys):
    """The authors' 512 recipe: SiT pretrained without qk-norm, DMF fine-tuned with it."""
    from dmf.build import build_network
    from tests.helpers import compose_config

    cfg = compose_config(["experiment=digits_dmf", "model.depth=3", "model.hidden_size=32", "model.num_heads=2",
                          "model.dmf_depth=1"])
    sit = build_model("SiT-T/2", input_size=8, in_channels=1, num_classes=10, depth=3, hidden_size=32, num_heads=2)
    for p in sit.parameters():
        torch.nn.init.normal_(p)
    torch.save({"ema": sit.state_dict()}, tmp_path / "sit.pt")
    cfg.model.qk_norm, cfg.ckpt = True, str(tmp_path / "sit.pt")
    net = build_network(cfg)
    assert all(torch.equal(m.scale, torch.ones_like(m.scale)) for n, m in net.named_modules() if n.endswith("_norm"))
    assert torch.equal(net.blocks[2].attn.qkv.weight, sit.blocks[2].attn.qkv.weight)
    assert "kept the initialisation of 8 keys (logvar_linear, qk-norm scales (start at 1))" in capsys.readouterr().out
    # only some of the scales present is still a mismatch
    partial = {k: v for k, v in tiny_dmft(qk_norm=True).state_dict().items() if "blocks.0.attn.k_norm" not in k}
    with pytest.raises(CheckpointMismatch, match="missing: blocks.0.attn.k_norm.scale"):
        load_pretrained(tiny_dmft(qk_norm=True), partial)


def test_rms_norm_statistics_are_float32_under_bf16():
    from dmf.models.attention.module import RMSNorm

    norm = RMSNorm(8)
    x = (torch.randn(4, 8) * 300).to(torch.bfloat16)
    expected = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    assert norm(x).dtype == torch.bfloat16 and torch.equal(norm(x), expected)
    assert norm(x.double()).dtype == torch.float64  # the compat vectors stay float64
