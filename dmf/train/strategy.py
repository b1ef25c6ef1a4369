"""Combinations that cannot train the objective (a strategy, an attention kernel) are refused before anything is
built."""
import torch
from omegaconf import DictConfig

from dmf.config.kinds import objective_kind
from dmf.core.errors import ConfigError
from dmf.models.attention import check_available, get_backend


def takes_jvp(cfg: DictConfig) -> bool:
    """The objective's step takes a forward-mode JVP through the network."""
    return objective_kind(cfg) == "dmf"


def check_strategy(cfg: DictConfig) -> None:
    strategy = cfg.trainer.get("strategy")
    name = strategy if isinstance(strategy, str) else str(strategy.get("_target_", "")) if strategy else ""
    if isinstance(strategy, str) and strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        import dmf.train.fsdp  # noqa: F401 -- registers dmf_fsdp
        if strategy not in StrategyRegistry:
            raise ConfigError(f"trainer.strategy={strategy} is not a strategy Lightning knows: auto, ddp, "
                              f"{dmf.train.fsdp.STRATEGY_NAME} (trainer=fsdp), or one of "
                              f"{', '.join(StrategyRegistry.available_strategies())}")
    lightning_fsdp = name.lower() in ("fsdp", "fsdp_cpu_offload") or name.endswith("strategies.FSDPStrategy")
    if lightning_fsdp and takes_jvp(cfg):
        raise ConfigError(
            f"trainer.strategy={name} (Lightning's FSDP, FullyShardedDataParallel) with objective "
            f"{cfg.objective._target_}: the DMF step's torch.func.jvp through its wrapped modules fails on torch 2.14 "
            "(functorch 'level.has_value() && level <= current_level INTERNAL ASSERT FAILED' in the all-gather's "
            "split; pytorch issues 102197, 182641). Use trainer=fsdp (strategy dmf_fsdp: FSDP2 that gathers the "
            "weights before the JVP) or trainer.strategy=ddp.")


def check_jvp_attention(cfg: DictConfig) -> None:
    """The DMF step's JVP pass (objective.jvp=joint or split) carries tangents through attention: a kernel without
    forward-mode AD would fail at the first step, after the data and the model are built."""
    name = cfg.model.get("attention", "auto")
    if name != "auto" and takes_jvp(cfg) and not get_backend(name).supports_jvp:
        raise ConfigError(f"attention.backend={name} has no forward-mode AD, which the {cfg.objective._target_} step "
                          f"needs (its JVP pass); train with attention.backend=auto (the fastest kernel for each "
                          f"call: {name} where no tangent is carried) and keep attention={name} for evaluation")


def check_attention_device(cfg: DictConfig) -> None:
    """The attention kernel named runs on the device Lightning will train on (after preflight's device checks)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    check_available(cfg.model.get("attention", "auto"), torch.device("cuda" if cuda else "cpu"))
