"""A diverging run stops at the step that went non-finite, names the term, keeps finite checkpoints, exits non-zero."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmf.train.entry import train
from dmf.train.nonfinite import NonFiniteError
from tests.helpers import compose_config

TINY = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "data.global_batch_size=16",
        "callbacks.progress.refresh_rate=0", "trainer.log_every_n_steps=1"]
DIVERGE = ["optim.lr=1e30", "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=1"]


def all_finite(path: Path) -> bool:
    sd = torch.load(path, weights_only=True)["state_dict"]
    return all(bool(torch.isfinite(v).all()) for v in sd.values() if v.is_floating_point())


def test_nonfinite_loss_stops_naming_step_and_term(tmp_path):
    cfg = compose_config(["experiment=digits_flow", f"run_dir={tmp_path}", *TINY, *DIVERGE])
    with pytest.raises(NonFiniteError, match=r"non-finite values at step \d+: train/loss") as err:
        train(cfg)
    assert "trainer.on_nonfinite=skip" in str(err.value)
    ckpts = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert ckpts and all(all_finite(p) for p in ckpts)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists() or all_finite(tmp_path / "checkpoints" / "last.ckpt")


def test_skip_drops_updates_then_stops_at_the_limit(tmp_path):
    cfg = compose_config(["experiment=digits_flow", f"run_dir={tmp_path}", *TINY, *DIVERGE,
                          "trainer.on_nonfinite=skip", "trainer.max_nonfinite_skips=2"])
    with pytest.raises(NonFiniteError, match=r"2 updates in a row were already skipped"):
        train(cfg)
    assert all(all_finite(p) for p in (tmp_path / "checkpoints").glob("*.ckpt"))


def test_bad_setting_is_named():
    cfg = compose_config(["experiment=digits_flow", "run_dir=/nonexistent/never", "trainer.on_nonfinite=ignore"])
    with pytest.raises(ValueError, match="trainer.on_nonfinite='ignore'"):
        train(cfg)


@pytest.mark.slow
def test_run_py_exits_nonzero_on_divergence(tmp_path):
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "run.py", "experiment=digits_flow", *TINY, *DIVERGE,
                          f"hydra.run.dir={tmp_path}"], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "non-finite values at step" in out.stderr + out.stdout
