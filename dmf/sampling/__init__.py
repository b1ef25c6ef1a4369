"""Samplers: sampler(net, noise, y) -> sample at t = 0, chosen by `sampler.name`."""
from dmf.sampling.base import Sampler
from dmf.sampling.flow_map import FlowMapEuler, FlowMapGamma, FlowMapRestart
from dmf.sampling.flow_model import FlowEuler, FlowHeun, FlowSDE
from dmf.sampling.grid import shift_time, time_grid
from dmf.sampling.guidance import guided_output

SAMPLERS = {cls.name: cls for cls in (FlowMapEuler, FlowMapRestart, FlowMapGamma, FlowEuler, FlowHeun, FlowSDE)}


def build_sampler(name: str, gamma: float = 0.0, **kwargs) -> Sampler:
    """The `sampler` config group: name picks the class, the rest are its options (gamma only for `gamma`)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler.name={name!r} is not one of {sorted(SAMPLERS)}")
    if name == "gamma":
        kwargs["gamma"] = gamma
    elif gamma:
        raise ValueError(f"sampler.gamma={gamma} only applies to sampler.name=gamma")
    return SAMPLERS[name](**kwargs)


__all__ = ["SAMPLERS", "Sampler", "build_sampler", "guided_output", "shift_time", "time_grid"]
