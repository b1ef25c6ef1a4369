"""The eval entry's output folder and plain-data view of config nodes (the objects come from dmf.build)."""
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def container(node) -> object:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.eval.out_dir).expanduser()
