"""Two CPU ranks through run.py (DDP, gloo), as a user starts them: each rank draws its own times, noise and
label drops; gradients are averaged, so the DDP step equals one process on the concatenated batch with the
same per-sample draws; every rank ends with the same weights."""
import csv
from pathlib import Path

import pytest
import torch

from tests.helpers import run_python
from tests.train.two_ranks import DMF, assert_data_parallel_step, run_two_ranks, save_init


@pytest.mark.slow
def test_ddp_ranks_draw_independently_and_average_gradients(tmp_path):
    init = save_init(DMF, tmp_path / "init.pt")
    records = run_two_ranks(DMF, ["trainer.strategy=ddp"], init, tmp_path)
    assert_data_parallel_step(DMF, init, records)


@pytest.mark.slow
def test_two_devices_with_run_dir_train_into_that_folder(tmp_path):
    """The user's form (run_dir=, strategy auto): Lightning starts rank 1 with the rank-0 command line plus
    hydra.run.dir="<run_dir>" (quoted), which names the same folder."""
    run_dir = tmp_path / "run"
    out = run_python("run.py", "experiment=digits_dmf", "debug=tiny", "model.depth=2", "model.dmf_depth=1",
                     "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=2", f"run_dir={run_dir}",
                     check=True)
    assert "global batch 16 = 2 device(s) x 8 per device x 1 accumulation step(s)" in out.stdout
    assert [p.relative_to(run_dir) for p in run_dir.glob("logs/*/metrics.csv")] == [Path("logs/version_0/metrics.csv")]
    with open(run_dir / "logs" / "version_0" / "metrics.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f) if r["train/loss"]] == [0, 1]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
