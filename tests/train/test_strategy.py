import pytest

from dmf.config import ConfigError
from dmf.train.entry import train
from dmf.train.strategy import check_strategy
from tests.helpers import compose_config


def test_fsdp_is_refused_for_the_jvp_objective_before_anything_is_built(tmp_path):
    cfg = compose_config(["experiment=digits_dmf", "trainer=fsdp", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"JVP.*FSDP.*trainer.strategy=ddp"):
        train(cfg)
    assert not any(tmp_path.iterdir())


def test_fsdp_is_open_to_the_flow_matching_objective_and_ddp_to_both():
    check_strategy(compose_config(["experiment=digits_flow", "trainer=fsdp"]))
    check_strategy(compose_config(["experiment=digits_dmf", "trainer.strategy=ddp"]))


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="Lightning's FSDP needs CUDA")
def test_fsdp_flow_matching_checkpoint_has_the_ddp_key_layout(tmp_path):
    """objective=fm under FSDP: the checkpoint holds full (unsharded) net.* and ema_net.* weights, as under DDP,
    and loads into the network strictly (the path mode=eval takes)."""
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from hydra.utils import instantiate

    from dmf.models import load_pretrained

    tiny = ["experiment=digits_flow", "model.depth=2", "model.hidden_size=32", "model.num_heads=2",
            "data.datamodule.batch_size=8", "callbacks.progress.refresh_rate=0"]
    out = subprocess.run([sys.executable, "run.py", *tiny, "trainer=fsdp", "trainer.devices=1", "trainer.max_steps=2",
                          f"hydra.run.dir={tmp_path}"], cwd=Path(__file__).parents[2], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    sd = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    net = instantiate(compose_config(tiny).model)
    assert {k for k in sd if k.startswith("net.")} == {f"net.{k}" for k in net.state_dict()}
    assert {k for k in sd if k.startswith("ema_net.")} == {f"ema_net.{k}" for k in net.state_dict()}
    assert load_pretrained(net, tmp_path / "checkpoints" / "last.ckpt") == {"dropped": [], "initialised": []}
