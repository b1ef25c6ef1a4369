"""Two CPU ranks (DDP, gloo) through run.py: a run stopped mid-epoch and resumed reads, on every rank, exactly the
samples of the uninterrupted run, step by step (each rank continues its own part of the epoch's order)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
# 256 over 2 ranks: 1,797 digits give 7 steps per epoch, so 9 steps cross an epoch boundary
DDP = ["experiment=digits_dmf", "debug=tiny", "model.depth=2", "model.dmf_depth=1", "data.global_batch_size=256",
       "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]


def train(run_dir: Path, steps: int, record: Path):
    out = subprocess.run(
        ["nice", sys.executable, "run.py", *DDP, f"trainer.max_steps={steps}", f"hydra.run.dir={run_dir}",
         "+callbacks.batches._target_=tests.train.batch_recorder.BatchRecorder", f"+callbacks.batches.path={record}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_a_ddp_run_resumed_mid_epoch_reads_each_ranks_samples_of_the_uninterrupted_run(tmp_path):
    train(tmp_path / "whole", 9, tmp_path / "whole_rec")
    train(tmp_path / "split", 3, tmp_path / "first")  # stops mid-epoch: step 3 of 7
    train(tmp_path / "split", 9, tmp_path / "resumed")  # resume=auto from checkpoints/last.ckpt
    for rank in (0, 1):
        whole = torch.load(tmp_path / "whole_rec" / f"rank{rank}.pt")
        first = torch.load(tmp_path / "first" / f"rank{rank}.pt")
        resumed = torch.load(tmp_path / "resumed" / f"rank{rank}.pt")
        assert sorted(first) == [0, 1, 2] and sorted(resumed) == list(range(3, 9)) and sorted(whole) == list(range(9))
        for step, (x, y) in {**first, **resumed}.items():
            assert torch.equal(x, whole[step][0]) and torch.equal(y, whole[step][1]), f"rank {rank}, step {step}"
    other = torch.load(tmp_path / "whole_rec" / "rank1.pt")
    assert not torch.equal(torch.load(tmp_path / "whole_rec" / "rank0.pt")[4][0], other[4][0])  # ranks read apart
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    resumed = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
