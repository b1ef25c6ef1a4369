"""The ImageNet experiment trains through `run.py` from a weights file: the command `bench/gpu_all.sh` times on a
GPU (issue 11, item 6), shrunk to a CPU, so a lent card never spends its minutes on a config or callback error."""
import csv
import json
from functools import partial

import torch

from tests.helpers import run_python

TINY = ["model.depth=3", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=2", "data.resolution=64"]


run = partial(run_python, check=True)


def test_dmf_xl_256_trains_from_a_random_init_file_through_run_py(tmp_path):
    init, timer, run_dir = tmp_path / "init.pt", tmp_path / "timer.json", tmp_path / "run"
    run("bench/init_checkpoint.py", "--model", "DMFT-XL/2", "--input-size", "8", "--size", "3", "32", "2",
        "--dmf-depth", "2", "--out", str(init))
    run("run.py", "experiment=dmf_xl_256", "data=synthetic", f"ckpt={init}", *TINY, "data.global_batch_size=4",
        "trainer.devices=1", "trainer.strategy=auto", "trainer.max_steps=6", "trainer.log_every_n_steps=2",
        f"run_dir={run_dir}",
        f"+callbacks.step_timer={{_target_: bench.step_timer.StepTimer, warmup: 2, out: {timer}}}")

    result = json.loads(timer.read_text())
    assert result["steps_timed"] == 3 and result["per_device_batch"] == 4 and result["img_s"] > 0
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 6
    start = torch.load(init, map_location="cpu")
    start = start.get("model", start)
    # training started from the file: the EMA (decay 0.9999) is still within a hair of it, the weights moved
    key = "blocks.0.attn.qkv.weight"
    assert torch.allclose(last["state_dict"][f"ema_net.{key}"], start[key], atol=1e-3)
    assert not torch.equal(last["state_dict"][f"net.{key}"], start[key])
    rows = list(csv.DictReader(open(run_dir / "logs" / "version_0" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [1, 3, 5]
    assert (run_dir / "run.log").exists()
