"""Time proposals: logit-normal t_fm for the flow-matching term, a sorted pair (t >= r) for the MeanFlow term."""
import torch

from dmf.core.paths import get_path


class LogitNormalTime:
    def __init__(self, path="linear", P_mean=0.0, P_std=1.0, P_mean_t=0.4, P_std_t=1.0, P_mean_r=-1.2, P_std_r=1.0):
        for name, std in (("P_std", P_std), ("P_std_t", P_std_t), ("P_std_r", P_std_r)):
            if std < 0:
                raise ValueError(f"time.{name}={std} must be >= 0")
        self.path = get_path(path)
        self.P_mean, self.P_std = P_mean, P_std
        self.P_mean_t, self.P_std_t, self.P_mean_r, self.P_std_r = P_mean_t, P_std_t, P_mean_r, P_std_r

    def _draw(self, n, mean, std, device, generator):
        z = torch.randn(n, device=device, generator=generator) * std + mean
        return self.path.time_from_normal(z)

    def sample_fm(self, n: int, device=None, generator=None) -> torch.Tensor:
        return self._draw(n, self.P_mean, self.P_std, device, generator)

    def sample_tr(self, n: int, device=None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self._draw(n, self.P_mean_t, self.P_std_t, device, generator)
        b = self._draw(n, self.P_mean_r, self.P_std_r, device, generator)
        return torch.maximum(a, b), torch.minimum(a, b)
