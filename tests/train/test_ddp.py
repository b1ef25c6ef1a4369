"""Two CPU ranks through run.py (DDP, gloo), as a user starts them: each rank draws its own times, noise and
label drops; gradients are averaged, so the DDP step equals one process on the concatenated batch with the
same per-sample draws; every rank ends with the same weights."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dmf.models import load_pretrained
from dmf.objectives.draws import concat
from dmf.build import build_objective
from tests.helpers import compose_config

ROOT = Path(__file__).parents[2]
TINY = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1",
        "callbacks.progress.refresh_rate=0"]


@pytest.mark.slow
def test_ddp_ranks_draw_independently_and_average_gradients(tmp_path):
    overrides = ["experiment=digits_dmf", *TINY, "data.global_batch_size=16", "guidance.omega=0.6",
                 "objective.cfg_prob=0.3"]
    init = tmp_path / "init.pt"
    torch.manual_seed(0)
    torch.save({"model": instantiate(compose_config(overrides).model).state_dict()}, init)
    out = subprocess.run(
        [sys.executable, "run.py", *overrides, "trainer.strategy=ddp", "trainer.devices=2",
         "trainer.accelerator=cpu", "trainer.max_steps=3", f"ckpt={init}", f"hydra.run.dir={tmp_path / 'run'}",
         "+callbacks.record._target_=tests.train.recorder.Recorder", f"+callbacks.record.path={tmp_path / 'rec'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "global batch 16 = 2 device(s) x 8 per device x 1 accumulation step(s)" in out.stdout
    r0, r1 = (torch.load(tmp_path / "rec" / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world_size"] == 2 and r0["batch"][0].shape[0] == 8
    assert not torch.equal(r0["batch"][0], r1["batch"][0])  # each rank reads its own part of the data

    # independent draws per rank in the same step
    for key in ("t_fm", "t", "r", "e_fm", "e_mf"):
        assert not torch.equal(r0["draws"][key], r1["draws"][key]), key
    # the same weights on every rank after training
    for k, v in r0["final"].items():
        assert torch.equal(v, r1["final"][k]), k

    # one process on the concatenated batch with the same per-sample draws gives the averaged gradient
    cfg = compose_config(overrides)
    net = instantiate(cfg.model)
    load_pretrained(net, init)
    x = torch.cat([r0["batch"][0], r1["batch"][0]])
    y = torch.cat([r0["batch"][1], r1["batch"][1]])
    loss, _ = build_objective(cfg)(net, x, y, draws=concat([r0["draws"], r1["draws"]]))
    loss.backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(r0["grads"][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name
