"""Feature extractors: uint8 RGB images -> named feature tensors. Chosen by `eval.extractors` (_target_)."""
from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.scoring.features.dinov2 import DINOv2
from dmf.eval.scoring.features.inception import InceptionV3

__all__ = ["DINOv2", "FeatureExtractor", "InceptionV3"]
