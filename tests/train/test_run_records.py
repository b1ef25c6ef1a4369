"""Run records that survive restarts: a wandb id from the run dir, sweep groups, stable per-step scalar keys."""
import csv

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from dmf.config import register_resolvers
from dmf.train.entry import train
from tests.helpers import CONF, compose_config


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
