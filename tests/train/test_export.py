"""mode=export: EMA weights in the authors' layout (.pt {"ema": ...}, .safetensors) + config, loadable by ours."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

from dmf.models import load_pretrained
from dmf.train.entry import train
from tests.helpers import compose_config

ROOT = Path(__file__).parents[2]
TINY = ["experiment=digits_dmf", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1"]


def test_export_writes_the_ema_weights_in_the_authors_layout(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config([*TINY, f"run_dir={run_dir}", "trainer.max_steps=2", "data.global_batch_size=8",
                          "callbacks.progress.refresh_rate=0"]))
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    cmd = [sys.executable, "run.py", "mode=export", *TINY, f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    ema = {k[len("ema_net."):]: v for k, v in torch.load(ckpt, weights_only=False)["state_dict"].items()
           if k.startswith("ema_net.")}
    stem = ckpt.with_name("last-ema")
    pt = torch.load(stem.with_suffix(".pt"), weights_only=True)
    assert list(pt) == ["ema"] and pt["ema"].keys() == ema.keys()
    tensors = load_file(stem.with_suffix(".safetensors"))
    for key, value in ema.items():
        assert torch.equal(pt["ema"][key], value) and torch.equal(tensors[key], value), key
    cfg = OmegaConf.load(stem.with_suffix(".yaml"))
    assert cfg.model.hidden_size == 32 and cfg.ckpt == str(ckpt)
    for exported in (stem.with_suffix(".pt"), stem.with_suffix(".safetensors")):
        net = instantiate(cfg.model)
        assert load_pretrained(net, exported) == {"dropped": [], "initialised": []}
        assert all(torch.equal(v, ema[k]) for k, v in net.state_dict().items())

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "mode.overwrite=true" in again.stderr  # nothing is silently replaced


def test_export_refuses_a_config_that_does_not_describe_the_weights(tmp_path):
    from dmf.models.checkpoint import CheckpointMismatch
    from dmf.train.export import export

    net = instantiate(compose_config(TINY).model)
    ckpt = tmp_path / "w.pt"
    torch.save({"ema": net.state_dict()}, ckpt)
    with pytest.raises(CheckpointMismatch, match="wrong shape"):
        export(compose_config([*TINY[:2], "model.hidden_size=64", "model.num_heads=2", "model.dmf_depth=1",
                               f"ckpt={ckpt}"]))
    assert not list(tmp_path.glob("w-ema*"))
