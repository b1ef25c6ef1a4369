"""No loading path runs code from a file: a checkpoint, partial eval state, feature weights or statistics file whose
unpickling would touch a marker file is refused on every path, with a message that says why and how to convert."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from dmf.build import build_guidance
from dmf.models import CheckpointError
from tests.eval.eval_helpers import PIXEL_OVERRIDES, TINY_MODEL, compose, tiny_net
from tests.helpers import compose_config

ROOT = Path(__file__).parents[1]


class Payload:
    """Unpickling it opens (creates) the marker file: stands in for any shell command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def planted(tmp_path):
    """A checkpoint with valid-looking weights plus the payload; returns (path, marker)."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"ema": tiny_net().state_dict(), "extra": Payload(marker)}, path)
    return path, marker


def refused(fn, marker, match="holds Python objects"):
    with pytest.raises((CheckpointError, ValueError, FileExistsError), match=match) as err:
        fn()
    assert not marker.exists(), "the payload ran"
    return str(err.value)


def eval_cfg(mode, run_dir, ckpt, *extra):
    return compose([f"mode={mode}", "eval=digits", f"run_dir={run_dir}", f"ckpt={ckpt}", *TINY_MODEL,
                    *PIXEL_OVERRIDES, "eval.metrics=[fd_pix]", "eval.num_samples=16", "eval.batch_size=8",
                    "eval.chunk_size=8", "eval.grid_size=0", "eval.device=cpu", *extra])


def test_train_ckpt_and_resume(tmp_path, planted):
    from dmf.train.entry import train

    path, marker = planted
    base = ["experiment=digits_dmf", "model.depth=3", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=2",
            "trainer.max_steps=1"]
    msg = refused(lambda: train(compose_config([*base, f"run_dir={tmp_path / 'a'}", f"ckpt={path}"])), marker)
    assert f"ckpt={path}" in msg and "weights_only=False" in msg and "converted.pt" in msg
    refused(lambda: train(compose_config([*base, f"run_dir={tmp_path / 'b'}", f"resume={path}"])), marker)


@pytest.mark.parametrize("mode", ["eval", "sample"])
def test_eval_and_sample_ckpt(tmp_path, planted, mode):
    path, marker = planted
    cfg = eval_cfg(mode, tmp_path, path)
    refused(lambda: instantiate(cfg.mode)(cfg), marker)
    assert not (tmp_path / "eval" / "euler_1" / "partial").exists()


def test_distill_teacher(planted):
    path, marker = planted
    cfg = compose_config(["experiment=digits_dmf", "guidance=distill", "guidance.teacher.model.name=SiT-T/2",
                          f"guidance.teacher.ckpt={path}"])
    msg = refused(lambda: build_guidance(cfg), marker)
    assert f"guidance.teacher.ckpt={path}" in msg


def test_partial_eval_states(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"ema": tiny_net().state_dict()}, good)
    cfg = eval_cfg("eval", tmp_path, good)
    instantiate(cfg.mode)(cfg)
    step_dir = tmp_path / "eval" / "euler_1"
    (step_dir / "result.json").unlink()  # as if killed before the end: the rerun merges the partial states
    marker = tmp_path / "PWNED"
    for state in (step_dir / "partial").glob("state_*.pt"):
        torch.save({"chunks": [0, 1], "states": {"fd_pix": Payload(marker)}}, state)
    refused(lambda: instantiate(cfg.mode)(cfg), marker)
    # state files without a spec.json are not even read
    (step_dir / "partial" / "spec.json").unlink()
    refused(lambda: instantiate(cfg.mode)(cfg), marker, match="no spec.json")


def test_feature_network_and_classifier_weights(tmp_path):
    from dmf.digits.classifier import load_classifier
    from dmf.eval.scoring.features import DINOv2, InceptionV3

    marker = tmp_path / "PWNED"
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(2), "extra": Payload(marker)}, path)
    assert "eval.inception_weights" in refused(lambda: InceptionV3(weights=str(path)), marker)
    assert "eval.dinov2_weights" in refused(
        lambda: DINOv2(weights=str(path), arch="vit_tiny_patch16_224", resolution=32), marker)
    refused(lambda: load_classifier(path), marker)


def test_reference_statistics(tmp_path):
    import pickle

    from dmf.eval.reference.files import load_reference

    marker = tmp_path / "PWNED"
    path = tmp_path / "ref.pkl"
    path.write_bytes(pickle.dumps({"fid": {"mu": Payload(marker)}}))
    refused(lambda: load_reference(str(path)), marker, match="may hold only numpy arrays")


@pytest.mark.slow
def test_pipeline_stage_ckpt(tmp_path, planted):
    path, marker = planted
    out = subprocess.run([sys.executable, "run.py", f"pipeline.stages.flow.ckpt={path}", f"pipeline.stages.dmf.ckpt={path}",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "holds Python objects" in out.stderr
    assert not marker.exists()
