"""Features for the embedded digits task: the small CNN of dmf.digits.classifier (64-d penultimate
features for a Fréchet distance, 10 logits for class accuracy)."""
import torch

from dmf.digits.classifier import FEATURE_DIM, load_classifier
from dmf.eval.scoring.features.base import FeatureExtractor


class DigitsFeatures(FeatureExtractor):
    def __init__(self, weights: str | None = None, num_classes: int = 10):
        super().__init__()
        self.net = load_classifier(weights).eval().requires_grad_(False)
        self.dims = {"features": FEATURE_DIM, "logits": num_classes}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check(images)
        x = images[:, :1].float() / 127.5 - 1  # gray digits were replicated to RGB; back to [-1, 1]
        feats = self.net.features(x)
        return {"features": feats.float(), "logits": self.net.head(feats).float()}
