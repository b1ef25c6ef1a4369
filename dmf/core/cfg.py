"""Classifier-free guidance's one network call (the conditional and the null-class outputs in one batch), and the
rule for the interval of times it acts in, shared by training targets and samplers."""
import torch


def cond_uncond(net, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, y: torch.Tensor):
    """(net(x, t, r, y), net(x, t, r, null)) from one batched forward; the null class is net.num_classes."""
    n = x.shape[0]
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([r, r]),
               torch.cat([y, torch.full_like(y, net.num_classes)]))
    return both[:n], both[n:]


def check_interval(lo: float, hi: float, keys: tuple[str, str]) -> None:
    """Guidance acts for times in [lo, hi]: 0 <= lo <= hi <= 1; `keys` name the two settings in the error."""
    if not 0.0 <= lo <= hi <= 1.0:
        short = [k.rsplit(".", 1)[-1] for k in keys]
        raise ValueError(f"{keys[0]}={lo}, {keys[1]}={hi}: need 0 <= {short[0]} <= {short[1]} <= 1")
