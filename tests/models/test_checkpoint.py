import pytest
import torch

from dmf.models import SIT_TO_DMFT, CheckpointMismatch, build_model, load_weights
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
