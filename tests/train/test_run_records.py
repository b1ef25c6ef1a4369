"""Run records that survive restarts: a wandb id from the run dir, sweep groups, stable per-step scalar keys, the
composed config as hyperparameters, one metrics.csv per run across resumes."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from dmf.config import register_resolvers
from dmf.train.entry import train
from tests.helpers import CONF, compose_config
from tests.train.wandb_records import recorded_config

ROOT = Path(__file__).parents[2]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))


def test_wandb_id_follows_the_run_dir_and_resumes(offline, tmp_path):
    loggers = [instantiate(compose_config(["logger=wandb", f"run_dir={d}", "logger.name=x"]).logger)
               for d in (tmp_path / "a", tmp_path / "a", tmp_path / "b")]
    ids = [lg._wandb_init["id"] for lg in loggers]
    assert ids[0] == ids[1] != ids[2]
    assert loggers[0]._wandb_init["resume"] == "allow"


def test_a_sweep_job_is_grouped_and_named_by_its_overrides(offline, tmp_path):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "logger=wandb", f"run_dir={tmp_path}", "guidance.omega=0.6", "hydra.mode=MULTIRUN",
            f"hydra.sweep.dir={tmp_path}/sweep-7"])
    HydraConfig.instance().set_config(cfg)
    try:
        init = instantiate(cfg.logger)._wandb_init
    finally:
        HydraConfig.instance().cfg = None
    assert init["group"] == "sweep-7" and init["name"] == cfg.hydra.job.override_dirname and "guidance.omega=0.6" in init["name"]
    assert "guidance.omega=0.6" in init["tags"]


def test_lr_grad_norm_before_clipping_and_throughput_are_logged(tmp_path):
    train(compose_config(["experiment=digits_dmf", "model.depth=2", "model.hidden_size=32", "model.num_heads=2",
                          "model.dmf_depth=1", "data.global_batch_size=8", "callbacks.progress.refresh_rate=0",
                          f"run_dir={tmp_path}", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
                          "trainer.gradient_clip_val=1e-6", "optim.lr=2e-4"]))
    rows = [r for r in csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")) if r.get("train/lr")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    for r in rows:
        assert float(r["train/lr"]) == pytest.approx(2e-4)
        assert float(r["train/grad_norm"]) > 1e-3  # the clip at 1e-6 acts after the norm is taken
        assert float(r["train/img_per_s"]) > 0
        assert r["train/loss_fm"] and r["train/loss_mf"]


def run_py(run_dir, *overrides, env=None):
    """python run.py as a user types it, on the digits tiny preset."""
    out = subprocess.run(["nice", sys.executable, "run.py", "experiment=digits_dmf", "debug=tiny",
                          f"hydra.run.dir={run_dir}", *overrides], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_the_composed_config_is_the_wandb_runs_config_and_a_resume_updates_it(tmp_path):
    run_dir = tmp_path / "run"
    env = {"WANDB_MODE": "offline", "HOME": str(tmp_path)}
    run_py(run_dir, "logger=wandb", "guidance.omega=0.3", "trainer.max_steps=2", env=env)
    run_py(run_dir, "logger=wandb", "guidance.omega=0.3", "trainer.max_steps=3", env=env)  # resume=auto
    attempts = [recorded_config(p) for p in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))]
    assert len(attempts) == 2 and attempts[0]["id"] == attempts[1]["id"]  # one wandb run, continued
    for attempt, max_steps in zip(attempts, (2, 3)):
        config = attempt["config"]
        assert config["guidance"]["omega"] == 0.3 and config["guidance"]["g_max"] == 0.7  # typed, and composed
        assert config["run_dir"] == str(run_dir)  # resolved (${hydra:runtime.output_dir})
        assert config["trainer"]["max_steps"] == max_steps and config["batch/global"] == 16
        assert "guidance.omega" not in config  # nested once, not repeated as a flat key


@pytest.mark.slow
def test_a_resumed_run_continues_one_metrics_csv_and_hparams_hold_the_config(tmp_path):
    run_py(tmp_path, "guidance.omega=0.3", "trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=2")
    run_py(tmp_path, "guidance.omega=0.3", "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=2")
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["version_0"]  # no version_1
    rows = list(csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == list(range(6))
    hparams = yaml.safe_load((tmp_path / "logs" / "version_0" / "hparams.yaml").read_text())
    assert hparams["guidance"]["omega"] == 0.3 and hparams["trainer"]["max_steps"] == 6  # the resumed attempt's
    assert hparams["run_dir"] == str(tmp_path) and hparams["batch/per_device"] == 16


def test_a_start_over_in_the_same_run_dir_moves_the_earlier_rows_aside(tmp_path):
    config = ["experiment=digits_dmf", "debug=tiny", "model.depth=2", "model.dmf_depth=1", f"run_dir={tmp_path}",
              "trainer.max_steps=2"]
    train(compose_config(config))
    shutil.rmtree(tmp_path / "checkpoints")  # as if killed before its first checkpoint: the rows stay, nothing to resume
    train(compose_config(config))  # starts again at step 0 in the same run dir

    def steps(name):
        return [int(r["step"]) for r in csv.DictReader(open(tmp_path / "logs" / "version_0" / name)) if r["train/loss"]]

    assert steps("metrics.csv") == [0, 1] and steps("metrics.superseded.csv") == [0, 1]
