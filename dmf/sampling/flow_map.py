"""Samplers for flow maps u(x, t, r): one network call per step jumps from t to r."""
import math

from dmf.sampling.base import Sampler


class FlowMapEuler(Sampler):
    """x <- x + (t_next - t) u(x, t, t_next)."""

    name = "euler"

    def step(self, net, x, t, t_next, y, noise):
        return x + (t_next - t) * self.model(net, x, t, t_next, y)


class FlowMapRestart(Sampler):
    """Jump to data, x0 = x - t u(x, t, 0), then re-noise to t_next with fresh noise (unless last)."""

    name = "restart"
    stochastic = True

    def step(self, net, x, t, t_next, y, noise):
        x0 = x - t * self.model(net, x, t, 0.0, y)
        if t_next <= 0:
            return x0
        a, s = self.path.coefficients(t_next)
        return a * x0 + s * noise


class FlowMapGamma(Sampler):
    """CTM-style gamma sampler: jump to t' = t_next sqrt(1 - gamma^2), then re-noise to t_next.

    Going from x_{t'} = alpha' x0 + sigma' e to x_{t_next} needs a = alpha(t_next) / alpha(t') and fresh noise
    of std sqrt(sigma(t_next)^2 - (a sigma(t'))^2), which keeps the path's marginal exactly (gamma = 0 is Euler).
    """

    name = "gamma"
    stochastic = True

    def __init__(self, gamma: float = 0.3, **kwargs):
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"sampler.gamma={gamma} must lie in [0, 1]")
        super().__init__(**kwargs)
        self.gamma = gamma

    def step(self, net, x, t, t_next, y, noise):
        t_mid = t_next * math.sqrt(1 - self.gamma ** 2)
        x = x + (t_mid - t) * self.model(net, x, t, t_mid, y)
        if t_next <= 0 or t_mid == t_next:
            return x
        (a_mid, s_mid), (a_next, s_next) = self.path.coefficients(t_mid), self.path.coefficients(t_next)
        a = a_next / a_mid
        return a * x + math.sqrt(max(s_next ** 2 - (a * s_mid) ** 2, 0.0)) * noise

