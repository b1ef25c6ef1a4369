"""Guidance of the training target v_tgt (none | mg | distill). Samplers have their own CFG (dmf/sampling)."""
import torch
from torch import nn

from dmf.core.cfg import check_interval, cond_uncond
from dmf.core.paths import per_sample


def in_interval(t: torch.Tensor, g_min: float, g_max: float) -> torch.Tensor:
    return (t >= g_min) & (t <= g_max)


class NoGuidance:
    def __init__(self, **experiment_options):
        """Options an experiment set for its guidance (omega, g_min, g_max) stay in the config when guidance=none
        is chosen on top of it (`experiment=dmf_xl_256 guidance=none`); they mean nothing without guidance."""

    def __call__(self, net, x_t, t, y, dropped, v):
        return v

    def to(self, device):
        return self


class ModelGuidance:
    """v_tgt = v + omega (net(x_t, t, t, y) - net(x_t, t, t, null)) where g_min <= t <= g_max and the label
    was kept; else v. The network guides its own target, evaluated without gradients."""

    def __init__(self, omega: float, g_min: float = 0.0, g_max: float = 1.0):
        check_interval(g_min, g_max, ("guidance.g_min", "guidance.g_max"))
        self.omega, self.g_min, self.g_max = omega, g_min, g_max

    def __call__(self, net, x_t, t, y, dropped, v):
        active = in_interval(t, self.g_min, self.g_max) & ~dropped
        if self.omega == 0 or not bool(active.any()):
            return v
        with torch.no_grad():
            cond, uncond = cond_uncond(net, x_t, t, t, y)
        return torch.where(per_sample(active, v), v + self.omega * (cond - uncond).to(v.dtype), v)

    def to(self, device):
        return self


class DistillGuidance:
    """A frozen flow-model teacher: inside [g_min, g_max] v_T(null) + omega (v_T(y) - v_T(null)), else v_T(y)."""

    def __init__(self, teacher: nn.Module, omega: float, g_min: float = 0.0, g_max: float = 1.0):
        check_interval(g_min, g_max, ("guidance.g_min", "guidance.g_max"))
        self.teacher = teacher.eval().requires_grad_(False)
        self.omega, self.g_min, self.g_max = omega, g_min, g_max

    def __call__(self, net, x_t, t, y, dropped, v):
        with torch.no_grad():
            cond, uncond = (o.to(v.dtype) for o in cond_uncond(self.teacher, x_t, t, t, y))
        guided = uncond + self.omega * (cond - uncond)
        return torch.where(per_sample(in_interval(t, self.g_min, self.g_max), v), guided, cond)

    def to(self, device):
        self.teacher.to(device)
        return self

