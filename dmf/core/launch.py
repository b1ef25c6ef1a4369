"""Which launch a process belongs to: the processes of one launch (DDP ranks from torchrun, srun's tasks, or the
ones Lightning starts for trainer.devices=N, which rerun rank 0's command line from its start) run the same jobs
in the same order, and rank 0 acts for all of them where only one may (dmf.core.files.folder_lock)."""
import os
import socket
import time

from dmf.core.errors import ConfigError
from dmf.core.ranks import launch_ranks

_jobs = 0  # jobs this process has started (a sweep without a launcher runs them one after another in one process)


def leads_launch() -> bool:
    """Rank 0 of this launch (a single process is): torchrun's or srun's rank, else the ranks Lightning gives the
    processes it starts itself (LOCAL_RANK, NODE_RANK)."""
    if (ranks := launch_ranks()) is not None:
        return ranks[0] == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def start_job() -> None:
    """run.py calls this as each job starts, in every rank."""
    global _jobs
    _jobs += 1
    launch_id()  # fixed before Lightning starts any process, which inherits it


def launch_id() -> str:
    """A name that every process of this launch shares, in this job, and no other launch has (restarts are
    other launches)."""
    env = os.environ
    if launch_ranks() is None:  # one process, or those Lightning starts: they inherit rank 0's environment
        launch = env.setdefault("DMF_LAUNCH_ID", f"{socket.gethostname()} pid {os.getpid()} {time.time_ns()}")
    elif "TORCHELASTIC_RUN_ID" in env:
        launch = f"torchrun {env['TORCHELASTIC_RUN_ID']} restart {env.get('TORCHELASTIC_RESTART_COUNT', 0)}"
    elif "RANK" not in env:  # srun's tasks
        launch = (f"slurm {env.get('SLURM_JOB_ID')}.{env.get('SLURM_STEP_ID')} "
                  f"restart {env.get('SLURM_RESTART_COUNT', 0)}")
    else:  # another env:// launcher
        launch = f"env {env.get('MASTER_ADDR')}:{env.get('MASTER_PORT')}"
    return f"{launch} job {_jobs}"


def require_one_process(mode: str) -> None:
    """For modes that read and write single files (export, collect): N processes would each write them."""
    if (ranks := launch_ranks()) is not None and ranks[1] > 1:
        raise ConfigError(f"mode={mode} runs in one process, but this launch started {ranks[1]} (torchrun or "
                          f"srun -n): start it as `python run.py mode={mode} ...`")
