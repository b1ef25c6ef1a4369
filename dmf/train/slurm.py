"""SLURM task layout = Lightning world size, and who owns the pre-timeout signal.

The launcher preset is the one place the layout is set: `trainer.devices` and `trainer.num_nodes` read the
launcher's `tasks_per_node` and `nodes` through the `dmf.launcher` resolver; a run whose trainer disagrees with
the SLURM allocation it runs in stops with the mismatch named, before any work.
"""
import os
import re

from dmf.core.errors import ConfigError


def _slurm_int(name: str) -> int | None:
    match = re.match(r"\d+", os.environ.get(name, ""))  # SLURM_NTASKS_PER_NODE may read "2(x3)"
    return int(match.group()) if match else None


def requeued() -> bool:
    """This SLURM job runs again after a requeue (preemption, or the pre-timeout signal's requeue)."""
    return (_slurm_int("SLURM_RESTART_COUNT") or 0) > 0


def check_task_layout(devices, num_nodes) -> None:
    """Inside a SLURM job, Lightning's world size must be the allocation's: one task per device."""
    per_node, nodes = _slurm_int("SLURM_NTASKS_PER_NODE"), _slurm_int("SLURM_JOB_NUM_NODES")
    if per_node is None or "SLURM_JOB_ID" not in os.environ:
        return
    if devices == "auto" and per_node > 1 or devices not in ("auto", per_node):
        raise ConfigError(
            f"trainer.devices={devices} but this SLURM job runs {per_node} tasks per node: set "
            f"hydra.launcher.tasks_per_node (trainer.devices follows it) or trainer.devices={per_node}")
    if nodes is not None and num_nodes != nodes:
        raise ConfigError(
            f"trainer.num_nodes={num_nodes} but this SLURM job has {nodes} nodes: set hydra.launcher.nodes "
            f"(trainer.num_nodes follows it) or trainer.num_nodes={nodes}")


def cpu_tasks_allocated(devices: int) -> bool:
    """Inside a SLURM job of `devices` tasks per node and no GPU (hydra/launcher=slurm_cpu with tasks_per_node=2):
    that many CPU processes are what the job asked for, not a GPU run that found no GPU."""
    gpus = os.environ.get("SLURM_GPUS_ON_NODE") or os.environ.get("SLURM_JOB_GPUS")
    return "SLURM_JOB_ID" in os.environ and _slurm_int("SLURM_NTASKS_PER_NODE") == devices and not gpus


def slurm_trainer_kwargs(kw: dict) -> dict:
    """Checks the layout; inside SLURM, Lightning's own auto-requeue is off: RequeueOnSignal owns the signal."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    check_task_layout(kw.get("devices", "auto"), kw.get("num_nodes", 1))
    if SLURMEnvironment.detect() and not kw.get("plugins"):
        kw["plugins"] = [SLURMEnvironment(auto_requeue=False)]
    return kw
