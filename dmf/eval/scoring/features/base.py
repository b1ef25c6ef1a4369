"""The feature-extractor interface the metrics consume."""
import torch
from torch import nn


class FeatureExtractor(nn.Module):
    """images: uint8 RGB (N, 3, H, W) at any resolution -> {feature name: float32 (N, dims[name])}.

    Subclasses set `dims`; each resizes/normalises internally exactly as its reference pipeline does.
    """

    dims: dict[str, int] = {}

    def check(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} takes uint8 (N, 3, H, W) images, got {images.dtype} "
                             f"{tuple(images.shape)} (convert with dmf.eval.generation.images.to_uint8)")

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
