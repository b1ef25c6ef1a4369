"""Two CPU ranks (DDP, gloo) through run.py on ImageNet-style webdataset shards, with 2 DataLoader workers per rank and
flips: a run resumed mid-epoch reads, on every rank, exactly the batches of the uninterrupted run, posterior noise and
flips included, and ends with its weights. (How the first run stopped, by max_steps or by the requeue signal, is
tests/train/test_ddp_resume.py's part: here the resume starts from the uninterrupted run's mid-epoch checkpoint, which
holds the same state. The .npy folder with workers: tests/data/test_datamodules.py, in-process.)"""
from functools import partial
from pathlib import Path

import pytest
import torch
from tests.helpers import run_python
from tests.train.batch_recorder import same_batches

# the ImageNet experiment shrunk to a CPU (docs/training.md, "Smoke-testing an ImageNet experiment") on the fixture's
# 9 latents of 64 px images
BASE = ["experiment=dmf_xl_256", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1",
        "data.resolution=64", "data.num_classes=3", "data.global_batch_size=4", "data.datamodule.flip=true",
        "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
        "callbacks.checkpoint.every_n_train_steps=3"]
# 24 samples an epoch over 2 ranks x 2 workers: 3 batches of 2 per worker, 6 steps; resumed after an odd number of
# steps, the resumed pass starts on worker 1's stream; 8 steps cross into the next epoch
DATA = ["data=imagenet256_wds", "data.datamodule.num_samples=24", "data.datamodule.num_workers=2"]
RESUME_AT, STEPS = 3, 8


run = partial(run_python, check=True)


@pytest.fixture(scope="module")
def init(tmp_path_factory) -> Path:
    """A random-init weights file of the tiny network (`ckpt=`, which the experiment requires)."""
    path = tmp_path_factory.mktemp("init") / "init.pt"
    run("bench/init_checkpoint.py", "--model", "DMFT-XL/2", "--input-size", "8", "--num-classes", "3", "--size", "2",
        "32", "2", "--dmf-depth", "1", "--out", str(path))
    return path


def train(init: Path, root: Path, run_dir: Path, record: Path, *extra):
    return run("run.py", *BASE, f"ckpt={init}", *DATA, f"data.root={root}", f"trainer.max_steps={STEPS}",
        f"hydra.run.dir={run_dir}", "+callbacks.batches._target_=tests.train.batch_recorder.BatchRecorder",
        f"+callbacks.batches.path={record}", *extra)


@pytest.mark.slow
def test_a_ddp_run_on_shards_resumed_mid_epoch_reads_the_same_latents_and_ends_with_the_same_weights(init, preprocessed,
                                                                                                     tmp_path):
    train(init, preprocessed, tmp_path / "whole", tmp_path / "whole_rec")
    checkpoint = tmp_path / "whole" / "checkpoints" / f"step_{RESUME_AT:06d}.ckpt"
    out = train(init, preprocessed, tmp_path / "resumed", tmp_path / "resumed_rec", f"resume={checkpoint}")
    assert "not resumable" not in out.stderr  # Lightning's warning, which our loaders' resume makes untrue
    for rank in (0, 1):
        reference = torch.load(tmp_path / "whole_rec" / f"rank{rank}.pt")
        seen = torch.load(tmp_path / "resumed_rec" / f"rank{rank}.pt")
        assert sorted(reference) == list(range(STEPS)) and sorted(seen) == list(range(RESUME_AT, STEPS))
        for step, batches in seen.items():
            assert same_batches(batches, reference[step]), (rank, step)
    whole = [torch.load(tmp_path / "whole_rec" / f"rank{r}.pt") for r in (0, 1)]
    assert not same_batches(whole[0][RESUME_AT], whole[1][RESUME_AT])  # each rank reads its own samples
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
