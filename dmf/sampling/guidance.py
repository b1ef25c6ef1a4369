"""Classifier-free guidance at sampling time, inside a time interval: d = d(null) + s (d(y) - d(null))."""
import torch

from dmf.core.cfg import cond_uncond


def guided_output(net, x, t: float, r: float, y, cfg_scale: float = 1.0, cfg_min: float = 0.0,
                  cfg_max: float = 1.0, interval_t: float | None = None):
    """net(x, t, r, y), guided with scale cfg_scale when cfg_min <= interval_t <= cfg_max (one batched forward);
    interval_t defaults to t (a multi-evaluation step may decide its interval once, at its start)."""
    n = x.shape[0]
    tt = torch.full((n,), t, device=x.device, dtype=x.dtype)
    rr = torch.full((n,), r, device=x.device, dtype=x.dtype)
    if cfg_scale == 1.0 or not cfg_min <= (t if interval_t is None else interval_t) <= cfg_max:
        return net(x, tt, rr, y)
    cond, uncond = cond_uncond(net, x, tt, rr, y)
    return uncond + cfg_scale * (cond - uncond)
