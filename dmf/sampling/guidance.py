"""Classifier-free guidance at sampling time, inside a time interval: d = d(null) + s (d(y) - d(null))."""
import torch


def guided_output(net, x, t: float, r: float, y, cfg_scale: float = 1.0, g_min: float = 0.0, g_max: float = 1.0,
                  interval_t: float | None = None):
    """net(x, t, r, y), guided with scale cfg_scale when g_min <= interval_t <= g_max (one batched forward);
    interval_t defaults to t (a multi-evaluation step may decide its interval once, at its start)."""
    n = x.shape[0]
    tt = torch.full((n,), t, device=x.device, dtype=x.dtype)
    rr = torch.full((n,), r, device=x.device, dtype=x.dtype)
    if cfg_scale == 1.0 or not g_min <= (t if interval_t is None else interval_t) <= g_max:
        return net(x, tt, rr, y)
    both = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([rr, rr]),
               torch.cat([y, torch.full_like(y, net.num_classes)]))
    cond, uncond = both[:n], both[n:]
    return uncond + cfg_scale * (cond - uncond)
