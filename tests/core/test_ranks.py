import os

import pytest

from dmf.core.ranks import launch_ranks, local_rank, rank_and_world

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODELIST",
               "SLURM_JOB_ID", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    for var in LAUNCH_VARS:
        # set first so that the undo also removes what a test leaves (a leaked MASTER_ADDR=node1 once made every
        # later DDP subprocess wait for that host)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    return monkeypatch


def test_a_single_process_is_rank_zero_of_one(clean_env):
    assert launch_ranks() is None and rank_and_world() == (0, 1) and local_rank() == 0


def test_torchrun_variables(clean_env):
    clean_env.setenv("RANK", "5"), clean_env.setenv("WORLD_SIZE", "8"), clean_env.setenv("LOCAL_RANK", "1")
    assert launch_ranks() == (5, 8, 1) and rank_and_world() == (5, 8) and local_rank() == 1


def test_srun_tasks_without_torchrun(clean_env):
    for k, v in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                 "SLURM_NODELIST": "node[1-2]", "SLURM_JOB_ID": "123", "SLURM_JOB_NAME": "dmf"}.items():
        clean_env.setenv(k, v)
    assert launch_ranks() == (3, 4, 1)
    assert "MASTER_ADDR" not in os.environ  # reading the ranks sets nothing; the process group's start does


def test_preprocess_parts_follow_the_launcher(clean_env):
    from dmf.data.preprocess import _resolve_part

    assert _resolve_part(None, None) == (0, 1)
    clean_env.setenv("RANK", "2"), clean_env.setenv("WORLD_SIZE", "4")
    assert _resolve_part(None, None) == (2, 4) and _resolve_part(1, 3) == (1, 3)
