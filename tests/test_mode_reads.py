"""Keys typed for a mode that does not read them stop the launch (validate_typed): training settings for the modes
that use trained weights (eval, sample, export; the checkpoint's recorded value is named), keys a checkpoint's
weights fix typed otherwise than it was trained with, evaluation keys for mode=train without evaluating callbacks,
and anything but its own keys for mode=ref_stats."""
import re

import pytest
import torch
import yaml
from hydra.utils import instantiate

from dmf.config import ConfigError, validate_typed
from dmf.config.trained import follow_checkpoint
from dmf.train.resume_guard import CONFIG_KEY, plain_config
from tests.helpers import compose_config, run_python

TINY = ["experiment=digits_dmf", "debug=tiny"]


def fake_checkpoint(path, *training: str):
    """Random weights of the debug=tiny DMF network in the authors' layout, recording the config of a run trained
    with `training` (a real run records the same: dmf.train.resume_guard.RunRecord)."""
    cfg = compose_config([*TINY, "mode=train", f"run_dir={path.parent}", *training])
    torch.manual_seed(0)
    torch.save({"ema": instantiate(cfg.model).state_dict(), CONFIG_KEY: plain_config(cfg)}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.ckpt", "optim.lr=0.003")


def refused(typed: list[str], match: str):
    with pytest.raises(ConfigError, match=re.escape(match)):
        validate_typed(compose_config(typed), typed)


@pytest.mark.parametrize("mode", ["eval", "sample", "export"])
@pytest.mark.parametrize("key, trained", [
    ("guidance.omega=0.9", "guidance.omega=0.2"), ("optim.lr=0.5", "optim.lr=0.003"),
    ("ema.decay=0.5", "ema.decay=0.999"),
    ("time.P_mean_t=0.1", "time.P_mean_t=0.4"), ("objective.cfg_prob=0.5", "objective.cfg_prob=0.1"),
    ("trainer.max_steps=7", "trainer.max_steps=10")])
def test_a_training_setting_typed_for_trained_weights_is_refused_naming_the_trained_value(ckpt, mode, key, trained):
    typed = [f"mode={mode}", *TINY, f"ckpt={ckpt}", key]
    refused(typed, f"{key}: {key.split('=')[0]} is a training setting, which mode={mode} does not read")
    refused(typed, f"the checkpoint was trained with {trained}; to change it, train or fine-tune: python run.py "
                   f"mode=train ckpt={ckpt} {key}")


def test_time_path_is_a_training_setting_for_export_and_a_trained_value_for_sampling(ckpt):
    refused(["mode=export", *TINY, f"ckpt={ckpt}", "time.path=cosine"],
            "time.path is a training setting, which mode=export does not read")
    for mode in ("eval", "sample"):
        refused([f"mode={mode}", *TINY, f"ckpt={ckpt}", "sampler=restart", "time.path=cosine"],
                "time.path=cosine: the checkpoint was trained with time.path=linear, and its weights are only that")
        refused([f"mode={mode}", *TINY, f"ckpt={ckpt}", "sampler.path=cosine"],
                "sampler.path=cosine: the checkpoint was trained with time.path=linear")
    refused(["mode=eval", *TINY, f"ckpt={ckpt}", "model.dmf_depth=3"],
            "model.dmf_depth=3: the checkpoint was trained with model.dmf_depth=4, and its weights are only that "
            "(model.dmf_depth=3 here)")


def test_what_sampling_reads_and_the_checkpoint_agrees_with_is_accepted(ckpt, tmp_path):
    typed = ["mode=eval", *TINY, f"ckpt={ckpt}", "time.path=linear", "model.dmf_depth=4", "model.compile=false",
             "attention.backend=sdpa", "sampler=restart", "sampler.cfg_scale=2", "eval.steps=[1,2]", "seed=3",
             "eval.num_samples=10", f"run_dir={tmp_path}", "hydra/launcher=basic"]
    validate_typed(compose_config(typed), typed)
    validate_typed(compose_config(["mode=export", *TINY, f"ckpt={ckpt}", "mode.overwrite=true"]),
                   ["mode=export", *TINY, f"ckpt={ckpt}", "mode.overwrite=true"])


def test_weights_without_a_recorded_config_still_refuse_training_settings(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save({"ema": {}}, bare)
    with pytest.raises(ConfigError, match=r"guidance.omega is a training setting, which mode=eval does not read \(it "
                                          r"samples the trained weights as they are\); to change it"):
        typed = ["mode=eval", *TINY, f"ckpt={bare}", "guidance.omega=0.9"]
        validate_typed(compose_config(typed), typed)
    typed = ["mode=eval", *TINY, f"ckpt={bare}", "time.path=cosine"]  # nothing recorded to compare with
    validate_typed(compose_config(typed), typed)


@pytest.mark.parametrize("typed", [["eval.steps=[1,2]"], ["sampler=restart"], ["sampler.cfg_scale=2"],
                                   ["eval.metrics=[fd_digits]"], ["callbacks=with_eval", "eval.steps=[1,2]"]])
def test_training_refuses_evaluation_keys_no_callback_reads(typed):
    refused(["mode=train", *TINY, *typed], f"{typed[-1]} is not used by mode=train: no configured callback samples")


def test_training_with_evaluating_callbacks_accepts_what_they_read():
    typed = ["mode=train", *TINY, "callbacks=with_eval", "sampler=restart", "sampler.cfg_scale=2",
             "eval.metrics=[fd_digits]", "eval.labels=balanced", "eval.monitor_samples=50", "eval.inception_weights=x"]
    validate_typed(compose_config(typed), typed)


@pytest.mark.parametrize("key", ["guidance.omega=0.5", "sampler.cfg_scale=3", "eval.steps=[1]", "ckpt=x.ckpt",
                                 "model.dmf_depth=3", "eval.num_samples=10", "optim.lr=0.1"])
def test_ref_stats_refuses_keys_it_does_not_read(key):
    refused(["mode=ref_stats", *TINY, key], f"{key} is not read by mode=ref_stats: it computes statistics of the real "
                                             f"images of eval.ref_source")


def test_ref_stats_accepts_its_own_keys(tmp_path):
    typed = ["mode=ref_stats", "eval/ref_source=image_folder", f"eval.ref_source.path={tmp_path}", "data.resolution=8",
             f"eval.ref_out={tmp_path}/r.npz", "eval.metrics=[fid]", "eval.batch_size=8", "eval.overwrite=true",
             "seed=1", "eval.inception_weights=w.pth", "eval=digits"]
    validate_typed(compose_config(typed), typed)


def test_sampling_follows_the_path_the_checkpoint_was_trained_with(tmp_path, capsys):
    ckpt = fake_checkpoint(tmp_path / "cosine.ckpt", "time.path=cosine")
    cfg = compose_config(["mode=eval", *TINY, f"ckpt={ckpt}"])
    assert cfg.time.path == "linear"
    follow_checkpoint(cfg)
    assert cfg.time.path == "cosine" and instantiate(cfg.sampler, steps=1).path.name == "cosine"
    assert "time.path=cosine: the checkpoint was trained with it" in capsys.readouterr().out


# ---- through run.py, as a user types it ------------------------------------------------------------------

def one_error(out, *parts):
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert all(p in lines[0] for p in parts), lines[0]


def test_run_py_refuses_keys_the_mode_does_not_read(ckpt, tmp_path):
    run = [f"hydra.run.dir={tmp_path / 'run'}"]
    one_error(run_python("run.py", "mode=eval", *TINY, f"ckpt={ckpt}", "eval.steps=[1]", "guidance.omega=0.9", *run),
              "guidance.omega=0.9: guidance.omega is a training setting", "trained with guidance.omega=0.2")
    one_error(run_python("run.py", "mode=export", *TINY, f"ckpt={ckpt}", "optim.lr=0.5", *run),
              "optim.lr=0.5: optim.lr is a training setting", "trained with optim.lr=0.003")
    one_error(run_python("run.py", "mode=train", *TINY, "trainer.max_steps=1", "eval.steps=[1,2]", *run),
              "eval.steps=[1,2] is not used by mode=train")
    one_error(run_python("run.py", "mode=ref_stats", *TINY, "guidance.omega=0.5", *run),
              "guidance.omega=0.5 is not read by mode=ref_stats")
    assert not list(ckpt.parent.glob("last-ema*")) and not (tmp_path / "run" / "eval").exists()


def test_export_writes_the_config_the_weights_were_trained_with(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "last.ckpt", "time.path=cosine", "guidance.omega=0.4")
    out = run_python("run.py", "mode=export", *TINY, f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'run'}", check=True)
    assert "exported" in out.stdout
    record = yaml.safe_load(ckpt.with_name("last-ema.yaml").read_text())
    assert record["time"]["path"] == "cosine" and record["guidance"]["omega"] == 0.4 and record["ckpt"] == str(ckpt)


@pytest.mark.slow
def test_run_py_samples_on_the_path_the_checkpoint_was_trained_with(tmp_path):
    """A flow map trained on the cosine path, evaluated without typing time.path: sampled on cosine (it was linear,
    the config's, and scored another network's worth of error)."""
    import json

    ckpt = fake_checkpoint(tmp_path / "last.ckpt", "time.path=cosine")
    out = run_python("run.py", "mode=eval", *TINY, f"ckpt={ckpt}", "eval.steps=[1]", "eval.num_samples=20",
                     f"run_dir={tmp_path / 'run'}", check=True)
    assert "[dmf] time.path=cosine: the checkpoint was trained with it (the config says linear)" in out.stdout
    result = json.loads(next((tmp_path / "run" / "eval").glob("*_1/result.json")).read_text())
    assert result["fingerprint"]["sampler"]["path"] == "cosine"
