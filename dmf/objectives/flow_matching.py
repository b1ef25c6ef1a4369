"""Flow matching for SiT pretraining, with the REPA alignment term when an encoder is given."""
import torch
import torch.nn.functional as F

from dmf.objectives.labels import drop_labels


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

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor):
        n = x.shape[0]
        y, _ = drop_labels(y, self.cfg_prob, net.num_classes)
        t = self.time.sample_fm(n, device=x.device).to(x.dtype)
        x_t, v = self.time.path.interpolate(x, torch.randn_like(x), t)
        if self.repa_weight > 0:
            v_hat, projected = net(x_t, t, t, y, return_features=True)
            with torch.no_grad():
                targets = self.encoder(x)
            align = repa_loss(projected, targets)
        else:
            v_hat, align = net(x_t, t, t, y), torch.zeros((), device=x.device)
        mse = (v_hat - v).pow(2).mean()
        return mse + self.repa_weight * align, {"mse": mse.detach(), "repa": align.detach()}
