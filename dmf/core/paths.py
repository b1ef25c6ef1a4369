"""Interpolation paths between data (t = 0) and noise (t = 1): x_t = alpha(t) x + sigma(t) e."""
import math

import torch


def per_sample(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample (B,) tensor shaped to broadcast against x (B, ...)."""
    return t.view(-1, *([1] * (x.ndim - 1)))


class Path:
    name: str

    def alpha_sigma(self, t):  # -> (alpha, sigma, d alpha/dt, d sigma/dt)
        raise NotImplementedError

    def coefficients(self, t: float) -> tuple[float, float]:
        """(alpha, sigma) at a scalar time, for samplers."""
        a, s = self.alpha_sigma(torch.tensor(float(t), dtype=torch.float64))[:2]
        return float(a), float(s)

    def time_from_normal(self, z: torch.Tensor) -> torch.Tensor:
        """Map a standard-normal log-SNR sample z = log(sigma/alpha) to a time in (0, 1)."""
        raise NotImplementedError

    def interpolate(self, x: torch.Tensor, e: torch.Tensor, t: torch.Tensor):
        """(x_t, v) with v = dx_t/dt the conditional velocity."""
        a, s, da, ds = (per_sample(q, x) for q in self.alpha_sigma(t))
        return a * x + s * e, da * x + ds * e

    def predict(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor):
        """(x0_hat, e_hat) solving [alpha sigma; alpha' sigma'] [x0; e] = [x_t; v]."""
        a, s, da, ds = (per_sample(q, x_t) for q in self.alpha_sigma(t))
        det = a * ds - s * da
        return (ds * x_t - s * v) / det, (a * v - da * x_t) / det


class LinearPath(Path):
    name = "linear"

    def alpha_sigma(self, t):
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)

    def time_from_normal(self, z):
        return torch.sigmoid(z)  # t / (1 - t) = exp(z)


class CosinePath(Path):
    name = "cosine"

    def alpha_sigma(self, t):
        h = math.pi / 2
        return torch.cos(h * t), torch.sin(h * t), -h * torch.sin(h * t), h * torch.cos(h * t)

    def time_from_normal(self, z):
        return (2 / math.pi) * torch.atan(torch.exp(z))  # tan(pi t / 2) = exp(z)


PATHS = {p.name: p for p in (LinearPath(), CosinePath())}


def get_path(name: str) -> Path:
    if name not in PATHS:
        raise ValueError(f"time.path={name!r} is not one of {sorted(PATHS)}")
    return PATHS[name]
