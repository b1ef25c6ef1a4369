"""Logger factories that need more than a _target_."""
import os
from pathlib import Path


def wandb_logger(save_dir: str, project: str = "dmf", name: str | None = None, **kwargs):
    """A WandbLogger that runs offline when no API key is configured, instead of prompting or failing."""
    from lightning.pytorch.loggers import WandbLogger

    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    offline = os.environ.get("WANDB_MODE") == "offline" or not has_key
    return WandbLogger(save_dir=save_dir, project=project, name=name, offline=offline, **kwargs)
