"""Flow matching for SiT pretraining, with the REPA alignment term when an encoder is given."""
import functools

import torch
import torch.nn.functional as F

from dmf.objectives.draws import Draws, gaussian
from dmf.objectives.guidance import NoGuidance
from dmf.objectives.labels import apply_drop, drop_mask


def repa_loss(projected: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """- mean cosine similarity between projected hidden states and frozen encoder features, over tokens."""
    if [p.shape for p in projected] != [z.shape for z in targets]:
        raise ValueError(f"REPA: the SiT projectors give {[tuple(p.shape) for p in projected]} but the encoder "
                         f"{[tuple(z.shape) for z in targets]}; set model.z_dims to the encoder's feature widths and "
                         f"match its token grid (patch size / resolution)")
    sims = [F.cosine_similarity(p, z.to(p.dtype), dim=-1).mean() for p, z in zip(projected, targets)]
    return -torch.stack(sims).mean()


class FlowMatchingLoss:
    """mean (v_hat - v)^2 + repa_weight * REPA.

    `encoder(images) -> list of (B, T, D_k)` features of the clean images, one per projector (frozen, e.g. DINOv2;
    dmf/objectives/encoders). It may be given as a functools.partial (Hydra `_partial_: true`), built only when repa_weight > 0.
    The images are the batch's raw images when the data carries them, else the clean input x (pixel space).
    """

    def __init__(self, time, guidance=None, cfg_prob: float = 0.1, repa_weight: float = 0.0, encoder=None):
        if guidance is not None and not isinstance(guidance, NoGuidance):
            raise ValueError("objective=fm trains a flow model on the plain velocity: set guidance=none")
        if repa_weight > 0 and encoder is None:
            raise ValueError("objective.repa_weight > 0 needs objective.encoder (frozen features of the clean images)")
        if repa_weight > 0 and isinstance(encoder, functools.partial):
            encoder = encoder()
        self.time, self.cfg_prob, self.repa_weight = time, cfg_prob, repa_weight
        self.encoder = encoder if repa_weight > 0 else None

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

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None, generator=None,
                 images: torch.Tensor | None = None):
        d = draws if draws is not None else self.draw(x.shape[0], x, generator)
        y = apply_drop(y, d["dropped"], net.num_classes)
        x_t, v = self.time.path.interpolate(x, d["e"], d["t"])
        t = d["t"]
        if self.repa_weight > 0:
            v_hat, projected = net(x_t, t, t, y, return_features=True)
            with torch.no_grad():
                targets = self.encoder(x if images is None else images)
            align = repa_loss(projected, targets)
        else:
            v_hat, align = net(x_t, t, t, y), torch.zeros((), device=x.device)
        mse = (v_hat - v).pow(2).mean()
        return mse + self.repa_weight * align, {"mse": mse.detach(), "repa": align.detach()}
