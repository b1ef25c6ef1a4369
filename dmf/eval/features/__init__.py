"""Feature extractors: uint8 RGB images -> named feature tensors. Chosen by `eval.extractors` (_target_)."""
from dmf.eval.features.base import FeatureExtractor
from dmf.eval.features.dinov2 import DINOv2
from dmf.eval.features.inception import InceptionV3

__all__ = ["DINOv2", "FeatureExtractor", "InceptionV3"]
