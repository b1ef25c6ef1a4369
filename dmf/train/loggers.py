"""Logger factories that need more than a _target_."""
import hashlib
import os
from pathlib import Path


def run_id(run_dir: str | os.PathLike) -> str:
    """A wandb run id that is a function of the run dir: a requeued or resumed job continues the same run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def sweep_identity() -> dict:
    """Inside a Hydra multirun job: the sweep dir's name as group, the job's overrides as name and tags."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    return {"group": Path(hc.sweep.dir).name, "name": hc.job.override_dirname or None,
            "tags": [o[:64] for o in overrides]}  # wandb limits a tag to 64 characters


def wandb_logger(save_dir: str, project: str = "dmf", name: str | None = None, **kwargs):
    """A WandbLogger that runs offline when no API key is configured, instead of prompting or failing; its id
    follows the run dir (resume="allow"), and a sweep's jobs share a group."""
    from lightning.pytorch.loggers import WandbLogger

    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    offline = os.environ.get("WANDB_MODE") == "offline" or not has_key
    identity = {"name": name, "id": run_id(save_dir), "resume": "allow", **sweep_identity()}
    identity.update(kwargs)
    return WandbLogger(save_dir=save_dir, project=project, offline=offline, **identity)
