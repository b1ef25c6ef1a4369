"""Values that used to run silently or fail late with errors naming no key: one message naming the key and the fix,
before any work."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmf.config import ConfigError, validate
from dmf.models import CheckpointError
from tests.helpers import compose_config

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("override, message", [
    ("ema.decay=2", r"ema.decay=2 must lie in \[0, 1\)"),
    ("ema.decay=1.0", r"ema.decay=1.0 must lie in \[0, 1\)"),
    ("guidance.omega=1.5", r"guidance.omega=1.5 must lie in \[0, 1.0\) for guidance=mg"),
    ("guidance.omega=-0.1", r"guidance.omega=-0.1 must lie"),
    ("data.resolution=16", r"data.resolution=16: data=digits only has 8x8 images"),
    ("data.resolution=abc", r"data.resolution='abc' must be an integer"),
    ("trainer.max_steps=abc", r"trainer.max_steps='abc' must be an integer"),
    ("seed=abc", r"seed='abc' must be an integer"),
    ("objective.cfg_prob=1.0", r"objective.cfg_prob=1.0 drops every label"),  # the constructor's traceback, else
    ("seed=4294967296", r"seed=4294967296 must lie in \[0, 4294967295\]"),  # mixed as a 32-bit word: 2**32 is seed 0
    ("trainer.on_nonfinite=ignore", r"trainer.on_nonfinite='ignore' must be stop or skip"),
])
def test_bad_values_name_the_key(override, message, tmp_path):
    cfg = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_the_defaults_pass(tmp_path):
    for experiment in ("digits_dmf", "digits_flow", "dmf_xl_256"):
        validate(compose_config([f"experiment={experiment}", f"run_dir={tmp_path}"]))
    validate(compose_config(["experiment=dmf_xl_256", "guidance=distill", "guidance.omega=4.0", f"run_dir={tmp_path}"]))


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"this is not a checkpoint at all", "is not a readable checkpoint"),
    ("truncated", "is not a readable checkpoint"),
])
def test_unreadable_ckpt_names_key_and_file(tmp_path, content, message):
    from dmf.build import build_network

    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        torch.save({"ema": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    for frozen in (False, True):  # training and sampling
        cfg = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", f"ckpt={path}"])
        with pytest.raises(CheckpointError, match=message) as err:
            build_network(cfg, frozen=frozen)
        assert f"ckpt={path}" in str(err.value)


def test_run_py_names_the_key(tmp_path):
    out = subprocess.run([sys.executable, "run.py", "experiment=digits_flow", "seed=abc", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "seed='abc' must be an integer" in out.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_eval_reads_the_checkpoint_before_building_feature_networks(tmp_path, monkeypatch):
    from hydra.utils import instantiate

    import dmf.eval.entry as eval_entry

    built = []
    monkeypatch.setattr(eval_entry, "build_scorer", lambda *a, **k: built.append(a) or 1 / 0)
    ref = tmp_path / "ref.npz"
    ref.write_bytes(b"unused")
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(b"\x00garbage" * 10)
    cfg = compose_config(["mode=eval", "experiment=digits_dmf", "eval=default", f"eval.ref_stats={ref}",
                          f"ckpt={bad}", f"run_dir={tmp_path}", "eval.device=cpu"])
    with pytest.raises(CheckpointError, match=rf"ckpt={bad} is not a readable checkpoint"):
        instantiate(cfg.mode)(cfg)
    assert not built
