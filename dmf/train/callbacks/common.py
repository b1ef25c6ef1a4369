"""Helpers shared by the evaluation callbacks: building pieces from configs, the network to sample from."""
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig


def build(obj, **overrides):
    """A config node (_target_) -> object; an object passes through (tests and Python users)."""
    if isinstance(obj, (DictConfig, dict)) and "_target_" in obj:
        return instantiate(obj, **overrides)
    if overrides:  # a factory, e.g. steps -> sampler; a built sampler cannot serve several step counts
        if hasattr(obj, "steps") or not callable(obj):
            raise TypeError(f"expected a config with _target_ or a factory accepting {sorted(overrides)}, "
                            f"got {type(obj).__name__}")
        return obj(**overrides)
    return obj


def sampling_net(pl_module) -> torch.nn.Module:
    """The EMA network (what the paper samples from); the raw network only if the module has no EMA."""
    net = getattr(pl_module, "ema_net", None)
    net = getattr(pl_module, "net", None) if net is None else net
    if net is None:
        raise AttributeError(f"{type(pl_module).__name__} has neither `ema_net` nor `net` to sample from")
    return net


def due(trainer, every_n_steps: int, last: int) -> bool:
    step = trainer.global_step
    return bool(every_n_steps) and step > 0 and step % every_n_steps == 0 and step != last
