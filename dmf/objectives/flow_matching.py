"""Flow matching for SiT pretraining, with the REPA alignment term when an encoder is given."""
import torch
import torch.nn.functional as F

from dmf.objectives.draws import Draws, gaussian
from dmf.objectives.labels import apply_drop, drop_mask


def repa_loss(projected: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """- mean cosine similarity between projected hidden states and frozen encoder features, over tokens."""
    sims = [F.cosine_similarity(p, z.to(p.dtype), dim=-1).mean() for p, z in zip(projected, targets)]
    return -torch.stack(sims).mean()


class FlowMatchingLoss:
    """mean (v_hat - v)^2 + repa_weight * REPA.

    `encoder(x) -> list of (B, T, D_k)` features of the clean input, one per projector (frozen, e.g. DINOv2).
    """

    def __init__(self, time, guidance=None, cfg_prob: float = 0.1, repa_weight: float = 0.0, encoder=None):
        if guidance is not None and type(guidance).__name__ != "NoGuidance":
            raise ValueError("objective=fm trains a flow model on the plain velocity: set guidance=none")
        if repa_weight > 0 and encoder is None:
            raise ValueError("objective.repa_weight > 0 needs objective.encoder (frozen features of the clean images)")
        self.time, self.cfg_prob, self.repa_weight, self.encoder = time, cfg_prob, repa_weight, encoder

    def to(self, device):
        if isinstance(self.encoder, torch.nn.Module):
            self.encoder.to(device)
        return self

    def draw(self, n: int, x: torch.Tensor, generator=None) -> Draws:
        """Every random choice of a step for n samples shaped like x[0]: label drops, times, noise."""
        return {
            "dropped": drop_mask(n, self.cfg_prob, x.device, generator),
            "t": self.time.sample_fm(n, device=x.device, generator=generator).to(x.dtype),
            "e": gaussian(n, x.shape[1:], x, generator),
        }

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None, generator=None):
        d = draws if draws is not None else self.draw(x.shape[0], x, generator)
        y = apply_drop(y, d["dropped"], net.num_classes)
        x_t, v = self.time.path.interpolate(x, d["e"], d["t"])
        t = d["t"]
        if self.repa_weight > 0:
            v_hat, projected = net(x_t, t, t, y, return_features=True)
            with torch.no_grad():
                targets = self.encoder(x)
            align = repa_loss(projected, targets)
        else:
            v_hat, align = net(x_t, t, t, y), torch.zeros((), device=x.device)
        mse = (v_hat - v).pow(2).mean()
        return mse + self.repa_weight * align, {"mse": mse.detach(), "repa": align.detach()}
