"""A sampler integrates from noise at t = 1 to data at t = 0 on a (shifted) time grid: sampler(net, noise, y)."""
import torch

from dmf.core.cfg import check_interval
from dmf.core.paths import get_path
from dmf.sampling.grid import time_grid
from dmf.sampling.guidance import guided_output


class Sampler:
    name: str = ""
    stochastic = False  # True: each step but the last draws fresh noise (given through `step_noise`)

    def __init__(self, steps: int = 1, shift: float = 1.0, cfg_scale: float = 1.0, cfg_min: float = 0.0,
                 cfg_max: float = 1.0, path: str = "linear", **unused):
        if unused:
            raise TypeError(f"sampler {self.name!r} takes no options {sorted(unused)} (sampler={self.name})")
        check_interval(cfg_min, cfg_max, ("sampler.cfg_min", "sampler.cfg_max"))
        self.steps, self.shift, self.cfg_scale, self.cfg_min, self.cfg_max = steps, shift, cfg_scale, cfg_min, cfg_max
        self.path = get_path(path)
        self.grid = time_grid(steps, shift).tolist()  # validates steps and shift at construction

    def model(self, net, x, t, r, y, interval_t=None):
        return guided_output(net, x, t, r, y, self.cfg_scale, self.cfg_min, self.cfg_max, interval_t)

    def step(self, net, x, t: float, t_next: float, y, noise):
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, net, noise: torch.Tensor, y: torch.Tensor, step_noise: torch.Tensor | None = None):
        """noise: x at t = 1. step_noise: optional (steps, *noise.shape) fresh noises, for reproducible
        stochastic samplers independent of batch composition; drawn with torch.randn when absent."""
        x = noise
        for i, (t, t_next) in enumerate(zip(self.grid[:-1], self.grid[1:])):
            fresh = None
            if self.stochastic and t_next > 0:
                fresh = step_noise[i] if step_noise is not None else torch.randn_like(x)
            x = self.step(net, x, t, t_next, y, fresh)
        return x

    def __repr__(self):
        return f"{type(self).__name__}(steps={self.steps}, shift={self.shift}, cfg_scale={self.cfg_scale})"
