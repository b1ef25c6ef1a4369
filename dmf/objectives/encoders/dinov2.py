"""REPA's frozen target for ImageNet, as the authors run it: DINOv2 ViT-B/14 (no registers) patch tokens.

Input: the raw image (uint8 / 255, or floats in [-1, 1] mapped to [0, 1]), ImageNet mean/std, bicubic-resized to
224 * (resolution / 256); the position embedding resampled once to the 16 * (resolution / 256) patch grid (timm's
resample_abs_pos_embed, as the authors do); output: the normalised patch tokens (the final LayerNorm, class
token dropped), 16 x 16 = 256 tokens of 768 at 256, one per token of a patch-2 SiT on the 32 x 32 latents.
Weights: the DINOv2 hub file dinov2_vitb14_pretrain.pth or timm's model.safetensors, a local file (the builder,
dmf.build.build_objective, fetches an hf:// URI given as objective.encoder.weights; objectives never download).
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dmf.models.checkpoint import safe_load

DEFAULT_WEIGHTS = "hf://timm/vit_base_patch14_dinov2.lvd142m/model.safetensors"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_weights(path, key: str = "objective.encoder.weights") -> dict[str, torch.Tensor]:
    """A DINOv2 state dict from a .safetensors or torch file (read as data only; `key` names the setting in errors);
    the hub file's and wrapped checkpoints' dicts (teacher / model / state_dict) unwrapped."""
    sd = safe_load(path, key=key)
    while isinstance(sd, dict) and "pos_embed" not in sd:
        inner = next((sd[k] for k in ("teacher", "model", "state_dict") if isinstance(sd.get(k), dict)), None)
        if inner is None:
            break
        sd = inner
    return sd


class DINOv2Encoder(nn.Module):
    """encoder(images (N, 3, res, res)) -> [(N, (16 * res / 256)^2, 768)], frozen."""

    def __init__(self, weights: str, resolution: int = 256, arch: str = "vit_base_patch14_dinov2",
                 arch_kwargs: dict | None = None):
        super().__init__()
        import timm
        from timm.layers import resample_abs_pos_embed

        if resolution % 256:
            raise ValueError(f"the REPA DINOv2 encoder follows the authors' 224 * (resolution / 256) input: "
                             f"data.resolution={resolution} must be a multiple of 256")
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"REPA encoder weights (objective.encoder.weights) {weights} is not a local file; "
                                    f"an hf:// URI is fetched by dmf.build.build_objective (or dmf.models.hub.resolve_path)")
        self.grid = 16 * resolution // 256
        self.input_size = 224 * resolution // 256
        self.net = timm.create_model(arch, pretrained=False, img_size=self.input_size, num_classes=0,
                                     **dict(arch_kwargs or {}))
        sd = dict(read_weights(path))
        sd.pop("mask_token", None)  # masked-image training only
        if "pos_embed" in sd:
            sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], [self.grid, self.grid], num_prefix_tokens=1,
                                                     interpolation="bicubic", antialias=True)
        try:
            self.net.load_state_dict(sd, strict=True)
        except RuntimeError as err:  # missing, unexpected or wrongly shaped keys
            raise RuntimeError(f"objective.encoder.weights={weights} does not fit timm {arch}"
                               f"{' ' + str(dict(arch_kwargs)) if arch_kwargs else ''} (expected DINOv2 ViT-B/14 "
                               f"weights: dinov2_vitb14_pretrain.pth or {DEFAULT_WEIGHTS}): "
                               f"{str(err).splitlines()[1].strip()[:300]}") from None
        self.net.eval().requires_grad_(False)
        self.z_dims = (self.net.num_features,)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"the DINOv2 REPA encoder takes RGB images (N, 3, H, W), got {tuple(images.shape)}")
        x = images.float() / 255 if images.dtype == torch.uint8 else (images.float() + 1) / 2
        x = (x - self.mean) / self.std
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic")  # after normalising, as REPA
        tokens = self.net.forward_features(x)
        return [tokens[:, self.net.num_prefix_tokens:].float()]
