"""Strategy combinations that cannot train correctly are refused before anything is built."""
from omegaconf import DictConfig

from dmf.core.errors import ConfigError

JVP_OBJECTIVES = ("DMF",)  # objectives whose step takes a forward-mode JVP through the network


def check_strategy(cfg: DictConfig) -> None:
    strategy = cfg.trainer.get("strategy")
    name = strategy if isinstance(strategy, str) else str(strategy.get("_target_", "")) if strategy else ""
    lightning_fsdp = name.lower() in ("fsdp", "fsdp_cpu_offload") or name.endswith("strategies.FSDPStrategy")
    if lightning_fsdp and any(o in cfg.objective._target_ for o in JVP_OBJECTIVES):
        raise ConfigError(
            f"trainer.strategy={name} (Lightning's FSDP, FullyShardedDataParallel) with objective "
            f"{cfg.objective._target_}: the DMF step's torch.func.jvp through its wrapped modules fails on torch 2.14 "
            "(functorch 'level.has_value() && level <= current_level INTERNAL ASSERT FAILED' in the all-gather's "
            "split; pytorch issues 102197, 182641). Use trainer=fsdp (strategy dmf_fsdp: FSDP2 that gathers the "
            "weights before the JVP) or trainer.strategy=ddp.")
