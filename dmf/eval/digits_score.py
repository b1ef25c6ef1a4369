"""Scores for the embedded digits task: Fréchet distance in the digit classifier's features and class accuracy."""
import torch

from dmf.data.digits import load_digits_tensors
from dmf.eval.digits_classifier import FEATURE_DIM, DigitsClassifier
from dmf.eval.frechet import FeatureStats, frechet_distance


@torch.no_grad()
def classifier_stats(classifier: DigitsClassifier, images: torch.Tensor, batch: int = 512):
    """(feature statistics, predicted labels) of images in [-1, 1]."""
    stats, preds = FeatureStats(FEATURE_DIM), []
    for chunk in images.split(batch):
        feats = classifier.features(chunk.float())
        stats.update(feats)
        preds.append(classifier.head(feats).argmax(1))
    return stats, torch.cat(preds)


class DigitsScorer:
    """Compares generated digits against the 1,797 real ones."""

    def __init__(self, classifier: DigitsClassifier):
        self.classifier = classifier
        real, self.real_labels = load_digits_tensors()
        self.real_stats, _ = classifier_stats(classifier, real)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        stats, preds = classifier_stats(self.classifier, images)
        fd = frechet_distance(stats.mu, stats.sigma, self.real_stats.mu, self.real_stats.sigma)
        return {"fd": fd, "class_acc": (preds.cpu() == labels.cpu()).float().mean().item()}
