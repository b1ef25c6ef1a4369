"""Strategy combinations that cannot train correctly are refused before anything is built."""
from omegaconf import DictConfig

from dmf.config import ConfigError

JVP_OBJECTIVES = ("DMF",)  # objectives whose step takes a forward-mode JVP through the network


def check_strategy(cfg: DictConfig) -> None:
    strategy = cfg.trainer.get("strategy")
    name = strategy if isinstance(strategy, str) else str(strategy.get("_target_", "")) if strategy else ""
    if "fsdp" in name.lower() and any(o in cfg.objective._target_ for o in JVP_OBJECTIVES):
        raise ConfigError(
            f"trainer.strategy={name} with objective {cfg.objective._target_}: the DMF step takes a forward-mode "
            "JVP through the network, and torch.func.jvp through FSDP-wrapped modules is broken upstream "
            "(pytorch issues 102197, 182641: the unsharded parameters are not dual tensors). Use trainer.strategy=ddp "
            "(DMFT-XL/2 at batch 32 per GPU fits one 80 GB GPU); FSDP is open to objective=fm (no JVP).")
