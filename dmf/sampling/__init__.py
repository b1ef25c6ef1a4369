"""Samplers: sampler(net, noise, y) -> sample at t = 0. The `sampler` config group (one file per sampler,
conf/sampler/<name>.yaml) instantiates the class through `_target_`; build_sampler picks one by name in code."""
from dmf.sampling.base import Sampler
from dmf.sampling.flow_map import FlowMapEuler, FlowMapGamma, FlowMapRestart
from dmf.sampling.flow_model import FlowEuler, FlowHeun, FlowSDE
from dmf.sampling.grid import shift_time, time_grid
from dmf.sampling.guidance import guided_output

SAMPLERS = {cls.name: cls for cls in (FlowMapEuler, FlowMapRestart, FlowMapGamma, FlowEuler, FlowHeun, FlowSDE)}


def build_sampler(name: str, **kwargs) -> Sampler:
    """The sampler called `name` (a conf/sampler file name) with its options; each class rejects options it lacks."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler={name!r} is not one of {sorted(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)


__all__ = ["SAMPLERS", "FlowEuler", "FlowHeun", "FlowMapEuler", "FlowMapGamma", "FlowMapRestart", "FlowSDE", "Sampler",
           "build_sampler", "guided_output", "shift_time", "time_grid"]
