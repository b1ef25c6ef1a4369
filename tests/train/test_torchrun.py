"""torchrun starts every rank as its own `python run.py`: the ranks must still make one run, in one folder, with
one record."""
import threading
from datetime import datetime, timedelta

import pytest
import torch
from torch.distributed import TCPStore

from dmf.command_line import command_line
from dmf.core.launch_time import KEY, launch_time
from tests.helpers import compose_config, run_python
from tests.train.two_ranks import DMF, TORCHRUN, assert_data_parallel_step, run_two_ranks, save_init


@pytest.mark.slow
def test_torchrun_trains_one_data_parallel_run(tmp_path):
    """`torchrun --nproc_per_node=2 run.py ...` with trainer.devices left at auto, on a CPU: one DDP run of the
    stated global batch (Lightning's own `auto` is one CPU device, which made each rank a whole run of its own)."""
    init = save_init(DMF, tmp_path / "init.pt")
    records = run_two_ranks(DMF, [], init, tmp_path, torchrun=True)
    assert_data_parallel_step(DMF, init, records)


@pytest.mark.parametrize("typed, message", [
    (["trainer.devices=1"], "trainer.devices=1 x trainer.num_nodes=1 lays the run out for 1 x 1"),
    (["trainer.num_nodes=2"], "trainer.devices=auto x trainer.num_nodes=2 lays the run out for 2 x 2"),
])
def test_a_trainer_layout_torchrun_did_not_start_is_refused(typed, message, monkeypatch):
    from dmf.train.preflight import PreflightError, check_devices

    for key, value in {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config(["experiment=digits_dmf", "trainer.accelerator=cpu", *typed])
    with pytest.raises(PreflightError, match="torchrun started 2 process\\(es\\) per node on 1 node\\(s\\)") as err:
        check_devices(cfg)
    assert message in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [False, True])
def test_torchrun_ranks_that_start_apart_train_into_one_folder(tmp_path, sweep):
    """Without run_dir=: rank 1 starts 1.5 s after rank 0 and still finds rank 0's folder (it used to stamp its
    own outputs/<experiment>/<time>/ with a .hydra/ and run.log in it); with -m, rank 0's sweep folder."""
    steps = ["trainer.max_steps=1,2"] if sweep else ["trainer.max_steps=2"]
    run_python("tests/train/late_rank.py", *(["-m"] if sweep else []), "experiment=digits_dmf", "debug=tiny",
               "model.depth=2", "model.dmf_depth=1", *steps, launcher=TORCHRUN, cwd=tmp_path, check=True)
    runs = list((tmp_path / ("multirun" if sweep else "outputs") / "digits_dmf").iterdir())
    assert len(runs) == 1, runs
    jobs = sorted(runs[0].glob("*trainer.max_steps=*")) if sweep else runs
    for job, steps_done in zip(jobs, [1, 2] if sweep else [2]):
        assert torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == steps_done
        assert (job / ".hydra" / "config.yaml").is_file()
        assert [p.name for p in (job / "config_history").iterdir()] == ["attempt_001"]


def test_only_rank_zero_writes_the_runs_record(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert command_line(["run_dir=a"]) == ["run_dir=a", "hydra.run.dir=a"]
    monkeypatch.setenv("RANK", "1")
    assert command_line(["run_dir=a"]) == ["run_dir=a", "hydra.run.dir=a", "hydra.output_subdir=null"]
    assert command_line(["hydra.output_subdir=rec"]) == ["hydra.output_subdir=rec"]  # typed: left as typed


@pytest.fixture
def agent_store(monkeypatch):
    """A store like the one torchrun's agent serves, and the variables torchrun gives rank `RANK`."""
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    for key, value in {"TORCHELASTIC_USE_AGENT_STORE": "True", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(store.port), "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    launch_time.cache_clear()
    yield store
    launch_time.cache_clear()


def test_a_later_rank_takes_rank_zeros_stamp(agent_store, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    threading.Timer(0.5, agent_store.set, (KEY + "%Y", "1999")).start()  # rank 0 publishes after rank 1 asks
    assert launch_time("%Y") == "1999"


def test_rank_zero_keeps_a_stamp_already_published(agent_store, monkeypatch):
    """An agent restart reruns rank 0 against the same store: the run goes on in its folder."""
    monkeypatch.setenv("RANK", "0")
    agent_store.set(KEY + "%Y", "1999")
    assert launch_time("%Y") == "1999"


def test_rank_zero_publishes_its_own_time(agent_store, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    stamp = launch_time("%Y-%m-%d_%H-%M-%S")
    assert agent_store.get(KEY + "%Y-%m-%d_%H-%M-%S").decode() == stamp


def test_one_process_stamps_its_own_time(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    launch_time.cache_clear()
    assert launch_time("%Y") == str(datetime.now().year)


@pytest.mark.parametrize("mode", ["export", "collect"])
def test_single_file_modes_refuse_a_launch_of_several_processes(mode, monkeypatch, tmp_path):
    """Each process would write the same files (under torchrun rank 1 failed on rank 0's export, 'would replace')."""
    from hydra.utils import instantiate

    from dmf.core.errors import ConfigError

    for key, value in {"RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    folder = [f"dir={tmp_path}"] if mode == "collect" else []
    cfg = compose_config([f"mode={mode}", f"ckpt={tmp_path / 'last.ckpt'}", *folder])
    with pytest.raises(ConfigError, match=f"mode={mode} runs in one process, but this launch started 2"):
        instantiate(cfg.mode)(cfg)
