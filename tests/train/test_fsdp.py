"""trainer=fsdp on two CPU ranks through run.py (gloo): the DMF step with its JVP through FSDP2-sharded blocks
equals one process on the concatenated batch and a DDP run (online and EMA weights), and the checkpoint has the
DDP key layout (full net.* / ema_net.*), loadable strictly into the network (the path mode=eval and ckpt= take)."""
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from dmf.models import load_pretrained
from tests.helpers import compose_config
from tests.train.two_ranks import DMF, ROOT, TINY, assert_data_parallel_step, run_two_ranks, save_init


def assert_ddp_layout(overrides: list[str], ckpt) -> dict:
    """The checkpoint holds the network's full weights under net.* and ema_net.*, and loads strictly."""
    sd = torch.load(ckpt, weights_only=False)["state_dict"]
    keys = {k for k in instantiate(compose_config(overrides).model).state_dict()}
    assert set(sd) == {f"net.{k}" for k in keys} | {f"ema_net.{k}" for k in keys}
    net = instantiate(compose_config(overrides).model)
    assert load_pretrained(net, ckpt) == {"dropped": [], "initialised": []}
    return sd


@pytest.mark.slow
def test_fsdp_dmf_step_equals_one_process_and_ddp(tmp_path):
    init = save_init(DMF, tmp_path / "init.pt")
    fsdp = run_two_ranks(DMF, ["trainer=fsdp"], init, tmp_path / "fsdp")
    assert_data_parallel_step(DMF, init, fsdp)

    ddp = run_two_ranks(DMF, ["trainer.strategy=ddp"], init, tmp_path / "ddp")
    for k, v in ddp[0]["final"].items():  # online and EMA weights after 3 steps
        torch.testing.assert_close(fsdp[0]["final"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert any(k.startswith("ema_net.") for k in ddp[0]["final"])

    sd = assert_ddp_layout(DMF, tmp_path / "fsdp" / "run" / "checkpoints" / "last.ckpt")
    ddp_sd = torch.load(tmp_path / "ddp" / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert set(sd) == set(ddp_sd)
    for k, v in ddp_sd.items():
        torch.testing.assert_close(sd[k], v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
def test_fsdp_flow_matching_trains_on_two_ranks_with_the_ddp_checkpoint_layout(tmp_path):
    tiny = ["experiment=digits_flow", *TINY[:3], TINY[4], "data.global_batch_size=16"]
    out = subprocess.run([sys.executable, "run.py", *tiny, "trainer=fsdp", "trainer.devices=2",
                          "trainer.accelerator=cpu", "trainer.max_steps=2", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    sd = assert_ddp_layout(tiny, tmp_path / "checkpoints" / "last.ckpt")
    assert not torch.equal(sd["net.final_layer.linear.weight"], torch.zeros_like(sd["net.final_layer.linear.weight"]))
