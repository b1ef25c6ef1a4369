"""Two CPU ranks (DDP, gloo) through run.py: a run stopped mid-epoch (by trainer.max_steps, or by the pre-timeout
signal as on SLURM) and resumed reads, on every rank, exactly the samples of the uninterrupted run, step by step
(each rank continues its own part of the epoch's order, two micro-batches per step), and ends with its weights."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.batch_recorder import same_batches

ROOT = Path(__file__).parents[2]
# 200 over 2 ranks, each 2 micro-batches of 50: 1,797 digits give 8 steps per epoch (each rank's ~899 samples cut
# to 800: uncut, their 17 micro-batches would end the epoch on a step of one), so 9 steps cross an epoch boundary
DDP = ["experiment=digits_dmf", "debug=tiny", "model.depth=2", "model.dmf_depth=1", "data.global_batch_size=200",
       "data.max_batch_per_device=50", "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
STEPS = 9


def train(run_dir: Path, steps: int, record: Path, *extra, stopped: bool = False):
    out = subprocess.run(
        ["nice", sys.executable, "run.py", *DDP, f"trainer.max_steps={steps}", f"hydra.run.dir={run_dir}",
         "+callbacks.batches._target_=tests.train.batch_recorder.BatchRecorder", f"+callbacks.batches.path={record}",
         *extra], cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if stopped:
        assert out.returncode != 0 and "stopped on SIGUSR2" in out.stdout + out.stderr, out.stderr[-3000:]
    else:
        assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run (its batches in rec/). Every optimizer step is the global batch on both ranks, the one
    at the epoch's end included (Lightning steps at an epoch's last batch, even mid-accumulation)."""
    root = tmp_path_factory.mktemp("whole")
    train(root / "run", STEPS, root / "rec")
    for rank in (0, 1):
        steps = torch.load(root / "rec" / f"rank{rank}.pt")
        assert {step: [len(x) for x, _ in batches] for step, batches in steps.items()} == {
            step: [50, 50] for step in range(STEPS)}, rank
    return root


def assert_same_samples_and_weights(whole: Path, split: Path, records: list[Path], first_step: int):
    for rank in (0, 1):
        reference = torch.load(whole / "rec" / f"rank{rank}.pt")
        seen = {}
        for record in records:
            seen.update(torch.load(record / f"rank{rank}.pt"))
        assert sorted(reference) == list(range(STEPS)) and sorted(seen) == list(range(first_step, STEPS))
        for step, batches in seen.items():
            assert same_batches(batches, reference[step]), f"rank {rank}, step {step}"
    ranks = [torch.load(whole / "rec" / f"rank{r}.pt")[4] for r in (0, 1)]
    assert not same_batches(*ranks)  # each rank reads its own samples
    a = torch.load(whole / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(split / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_a_ddp_run_stopped_by_the_signal_and_by_max_steps_resumes_each_ranks_samples(whole, tmp_path):
    """A SLURM run requeued, then extended: each resume continues every rank's stream and the step's micro-batches."""
    split = tmp_path / "split"
    # SIGUSR2 (SLURM signals every task) after step 2's first micro-batch: last.ckpt waits for step 3's start
    train(split, STEPS, tmp_path / "first", "+callbacks.signal._target_=tests.train.signal_at.SignalAt",
          "+callbacks.signal.step=2", "+callbacks.signal.mid_step=true", stopped=True)
    assert torch.load(split / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    train(split, 6, tmp_path / "second")  # resumed, stopped by trainer.max_steps mid-epoch (last.ckpt at step 5's end)
    train(split, STEPS, tmp_path / "third")  # resumed again, across the epoch's end
    assert sorted(torch.load(tmp_path / "third" / "rank0.pt")) == list(range(6, STEPS))
    assert_same_samples_and_weights(whole, split, [tmp_path / "second", tmp_path / "third"], 3)
