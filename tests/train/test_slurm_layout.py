"""The launcher preset sets the world size: trainer.devices / num_nodes follow tasks_per_node / nodes."""
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dmf.config import ConfigError, register_resolvers
from dmf.train.slurm import check_task_layout, slurm_trainer_kwargs
from tests.helpers import CONF


@pytest.fixture
def hydra_cfg():
    """Compose with the hydra node and make it the current HydraConfig, as in a launched job."""
    register_resolvers()

    def make(overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield make
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("preset, devices, nodes", [
    ("slurm_h100", 8, 1), ("slurm_h100_multinode", 8, 2), ("slurm_cpu", 1, 1), ("basic", "auto", 1)])
def test_trainer_layout_follows_the_launcher_preset(hydra_cfg, preset, devices, nodes):
    cfg = hydra_cfg(["experiment=digits_dmf", f"hydra/launcher={preset}"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (devices, nodes)


def test_one_key_sets_both_and_trainer_overrides_still_win(hydra_cfg):
    cfg = hydra_cfg(["hydra/launcher=slurm_h100_multinode", "hydra.launcher.nodes=4", "hydra.launcher.tasks_per_node=4"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (4, 4)


def test_without_hydra_the_local_defaults_apply():
    from tests.helpers import compose_config

    cfg = compose_config(["experiment=digits_dmf"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == ("auto", 1)


@pytest.mark.parametrize("devices, num_nodes, message", [
    (1, 1, "trainer.devices=1 but this SLURM job runs 2 tasks per node"),
    ("auto", 1, "trainer.devices=auto but this SLURM job runs 2 tasks per node"),
    (2, 1, "trainer.num_nodes=1 but this SLURM job has 3 nodes"),
])
def test_a_layout_that_disagrees_with_the_allocation_is_refused(monkeypatch, devices, num_nodes, message):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2(x3)")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "3")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_task_layout(devices, num_nodes)
    check_task_layout(2, 3)  # the matching layout passes


def test_outside_slurm_nothing_is_checked_or_added(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NUM_NODES"):
        monkeypatch.delenv(name, raising=False)
    assert "plugins" not in slurm_trainer_kwargs({"devices": 4, "num_nodes": 2})


@pytest.mark.parametrize("preset", ["slurm_h100", "slurm_h100_multinode", "slurm_cpu"])
def test_a_preset_resolves_its_log_folder_in_the_default_sweep_dir_before_jobs_run(preset):
    """Hydra instantiates the launcher, resolving submitit_folder (${hydra.sweep.dir}/.submitit/%j), before it sets
    its runtime config: the README's sweeps, which leave hydra.sweep.dir to its default, crashed there."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=digits_dmf", f"hydra/launcher={preset}"],
                      return_hydra_config=True)
    HydraConfig.instance().cfg = None
    folder = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)["submitit_folder"]
    assert re.fullmatch(r"multirun/digits_dmf/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d/\.submitit/%j", folder), folder
@pytest.mark.parametrize("experiment", ["dmf_xl_256", "dmf_xl_512", "sit_xl_256_repa", "sit_xl_512_repa"])
def test_an_imagenet_experiment_keeps_the_launchers_layout(hydra_cfg, experiment):
    """A node of 4 GPUs: tasks_per_node=4 must give 4 devices, not an experiment's fixed 8 (refused in the job,
    after waiting in the queue); the stated global batch is kept by the batch layout."""
    cfg = hydra_cfg([f"experiment={experiment}", "hydra/launcher=slurm_h100", "hydra.launcher.tasks_per_node=4"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (4, 1)
    assert hydra_cfg([f"experiment={experiment}", "hydra/launcher=slurm_h100"]).trainer.devices == 8
