"""Our networks reproduce the public reference implementation's outputs (float64, 1e-6 relative)."""
import json

import pytest
import torch
from torch.func import jvp

from dmf.models import DMFT, SiT, build_model
from tests.helpers import COMPAT, load_compat, reference_kwargs, rel_err

TOL = 1e-6


@pytest.fixture(scope="module")
def dmft_ref():
    ref = load_compat("dmft_tiny.pt")
    net = DMFT(dmf_depth=ref["config"]["dmf_depth"], **reference_kwargs(ref["config"])).double()
    net.load_state_dict(ref["state_dict"], strict=True)
    return net, ref


def test_dmft_outputs_match_reference(dmft_ref):
    net, ref = dmft_ref
    i, o = ref["inputs"], ref["outputs"]
    u, logvar = net(i["x"], i["t"], i["r"], i["y"], return_logvar=True)
    assert rel_err(u, o["u"]) < TOL
    assert rel_err(logvar, o["logvar"]) < TOL


def test_dmft_jvp_matches_reference(dmft_ref):
    net, ref = dmft_ref
    i, o = ref["inputs"], ref["outputs"]
    u, du_dt = jvp(lambda x, t, r: net(x, t, r, i["y"]), (i["x"], i["t"], i["r"]),
                   (i["v"], torch.ones_like(i["t"]), torch.zeros_like(i["r"])))
    assert rel_err(u, o["u_jvp"]) < TOL
    assert rel_err(du_dt, o["du_dt"]) < TOL


def test_fixed_position_embedding_matches_checkpoint(dmft_ref):
    net, ref = dmft_ref
    fresh = DMFT(dmf_depth=ref["config"]["dmf_depth"], **reference_kwargs(ref["config"]))
    assert torch.allclose(fresh.pos_embed.double(), ref["state_dict"]["pos_embed"], atol=1e-6)


def test_sit_repa_velocity_and_features_match_reference():
    ref = load_compat("sit_repa_tiny.pt")
    c = ref["config"]
    net = SiT(repa_depth=c["repa_depth"], z_dims=c["z_dims"], projector_dim=c["projector_dim"],
              **reference_kwargs(c)).double()
    net.load_state_dict(ref["state_dict"], strict=True)
    i, o = ref["inputs"], ref["outputs"]
    v, zs = net(i["x"], i["t"], None, i["y"], return_features=True)
    assert rel_err(v, o["v"]) < TOL
    assert len(zs) == len(o["zs"])
    for z, z_ref in zip(zs, o["zs"]):
        assert rel_err(z, z_ref) < TOL


def test_dmft_with_r_equal_t_is_the_sit_with_the_same_weights():
    ref = load_compat("sit_repa_tiny.pt")
    kw = reference_kwargs(ref["config"])
    sit = SiT(**kw).double().eval()
    sit.load_state_dict({k: v for k, v in ref["state_dict"].items() if not k.startswith("projectors")})
    dmft = DMFT(dmf_depth=2, **kw).double()
    dmft.load_state_dict(sit.state_dict(), strict=False)
    i = ref["inputs"]
    assert rel_err(dmft(i["x"], i["t"], i["t"], i["y"]), sit(i["x"], i["t"], i["t"], i["y"])) < 1e-12


@pytest.mark.parametrize("name, keys_file, kwargs", [
    ("DMFT-XL/2", "keys_dmft_xl2_256.json", dict(input_size=32, dmf_depth=20)),
    ("DMFT-XL/2", "keys_dmft_xl2_512_qknorm.json", dict(input_size=64, dmf_depth=20, qk_norm=True)),
    ("SiT-XL/2", "keys_sit_xl2_repa_256.json", dict(input_size=32, z_dims=[768])),
])
def test_parameter_names_and_shapes_equal_official_checkpoints(name, keys_file, kwargs):
    expected = json.loads((COMPAT / keys_file).read_text())
    with torch.device("meta"):
        net = build_model(name, in_channels=4, num_classes=1000, **kwargs)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize("experiment", ["dmf_xl_256", "dmf_xl_512"])
def test_the_distill_teacher_has_the_official_sit_parameter_names(experiment):
    """The teacher is the pretrained SiT-XL/2 (+REPA, whose projectors it does not use): at 512 it had taken the DMF
    student's qk-norm, and the official 512 SiT checkpoint could not load into it."""
    from hydra.utils import instantiate

    from tests.helpers import compose_config

    expected = {k for k in json.loads((COMPAT / "keys_sit_xl2_repa_256.json").read_text()) if not k.startswith("projectors.")}
    teacher = compose_config([f"experiment={experiment}", "guidance=distill", "guidance.teacher.ckpt=x"]).guidance.teacher
    with torch.device("meta"):
        net = instantiate(teacher.model)
    assert set(net.state_dict()) == expected
