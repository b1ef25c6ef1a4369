"""trainer=fsdp on two CPU ranks through run.py (gloo): the DMF step with its JVP through FSDP2-sharded blocks
equals one process on the concatenated batch and a DDP run (online and EMA weights), and the checkpoint has the
DDP key layout (full net.* / ema_net.*), loadable strictly into the network (the path mode=eval and ckpt= take)."""
import shutil
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from dmf.models import load_pretrained
from tests.helpers import ROOT, compose_config
from tests.train.two_ranks import DMF, TINY, assert_data_parallel_step, run_two_ranks, save_init


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
    clip = "trainer.gradient_clip_val=0.05"  # below the gradient norm: the clip (over sharded gradients) acts
    fsdp = run_two_ranks(DMF, ["trainer=fsdp", clip], init, tmp_path / "fsdp")
    assert_data_parallel_step(DMF, init, fsdp)

    ddp = run_two_ranks(DMF, ["trainer.strategy=ddp", clip], init, tmp_path / "ddp")
    for k, v in ddp[0]["final"].items():  # online and EMA weights after 3 steps
        torch.testing.assert_close(fsdp[0]["final"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert any(k.startswith("ema_net.") for k in ddp[0]["final"])

    sd = assert_ddp_layout(DMF, tmp_path / "fsdp" / "run" / "checkpoints" / "last.ckpt")
    ddp_sd = torch.load(tmp_path / "ddp" / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert set(sd) == set(ddp_sd)
    for k, v in ddp_sd.items():
        torch.testing.assert_close(sd[k], v, rtol=1e-4, atol=1e-5, msg=k)


def train_fm(tiny: list[str], run_dir, steps: int, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "run.py", *tiny, "trainer.devices=2", "trainer.accelerator=cpu",
                          f"trainer.max_steps={steps}", f"hydra.run.dir={run_dir}", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


@pytest.mark.slow
def test_fsdp_resumes_a_ddp_checkpoint_as_ddp_does(tmp_path):
    """objective=fm (no JVP): a DDP checkpoint (weights, EMA, AdamW state) loads into trainer=fsdp's shards, and
    the next step equals DDP's from the same file; the FSDP checkpoint has the DDP layout."""
    tiny = ["experiment=digits_flow", *TINY[:3], TINY[4], "data.global_batch_size=16"]
    first = train_fm(tiny, tmp_path / "ddp", 2, "trainer.strategy=ddp")
    shutil.copytree(tmp_path / "ddp", tmp_path / "fsdp")
    ddp = train_fm(tiny, tmp_path / "ddp", 3, "trainer.strategy=ddp", "resume=auto")
    fsdp = train_fm(tiny, tmp_path / "fsdp", 3, "trainer=fsdp", "resume=auto")
    assert_ddp_layout(tiny, tmp_path / "fsdp" / "checkpoints" / "last.ckpt")
    assert first["global_step"] == 2 and ddp["global_step"] == fsdp["global_step"] == 3
    moved = [k for k, v in first["state_dict"].items() if not torch.equal(v, ddp["state_dict"][k])]
    assert "net.final_layer.linear.weight" in moved and "ema_net.final_layer.linear.weight" in moved
    for k, v in ddp["state_dict"].items():
        torch.testing.assert_close(fsdp["state_dict"][k], v, rtol=1e-5, atol=1e-7, msg=k)
    for i, state in ddp["optimizer_states"][0]["state"].items():  # same parameter order, same AdamW moments
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(fsdp["optimizer_states"][0]["state"][i][name], state[name], rtol=1e-5,
                                       atol=1e-9)


@pytest.mark.slow
def test_fsdp_dmf_step_with_the_split_jvp_equals_one_process(tmp_path):
    """objective.jvp=split (du/dt from a JVP without autograd, u from its own pass) through the sharded blocks."""
    split = [*DMF, "objective.jvp=split"]
    init = save_init(split, tmp_path / "init.pt")
    assert_data_parallel_step(split, init, run_two_ranks(split, ["trainer=fsdp"], init, tmp_path))


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the nccl/bf16-mixed path of trainer=fsdp needs CUDA")
def test_fsdp_dmf_trains_on_gpus_with_the_ddp_checkpoint_layout(tmp_path):
    """trainer=fsdp on the GPUs there are (at most 2; nccl, bf16-mixed): the JVP step runs and the checkpoint
    has the DDP layout."""
    devices = min(torch.cuda.device_count(), 2)
    out = subprocess.run([sys.executable, "run.py", *DMF, "trainer=fsdp", f"trainer.devices={devices}",
                          "trainer.accelerator=gpu", "trainer.max_steps=2", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_ddp_layout(DMF, tmp_path / "checkpoints" / "last.ckpt")
