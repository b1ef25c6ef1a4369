"""Classifier-free guidance's one network call: the conditional and the null-class outputs in one batch."""
import torch


def cond_uncond(net, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, y: torch.Tensor):
    """(net(x, t, r, y), net(x, t, r, null)) from one batched forward; the null class is net.num_classes."""
    n = x.shape[0]
    both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([r, r]),
               torch.cat([y, torch.full_like(y, net.num_classes)]))
    return both[:n], both[n:]
