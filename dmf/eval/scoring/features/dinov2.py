"""DINOv2 ViT-L/14 for FD-DINOv2, as in EDM2: resize to 224 (bicubic, antialias) in 0..255, scale to [0, 1],
ImageNet mean/std, take the normalised class token (1,024-d).

Built with timm, weights from the official torch hub file (dinov2_vitl14_pretrain.pth) or timm's
(hf://timm/vit_large_patch14_dinov2.lvd142m/model.safetensors). Both store a 37x37 position grid (518 px);
it is resampled once at load time exactly as the hub model does at every call for 224 inputs (bicubic with
scale factor (16 + 0.1) / 37, no antialias), so features match the hub model's, which EDM2 uses."""
import torch
import torch.nn.functional as F

from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.scoring.features.weights import locate_weights
from dmf.objectives.encoders.dinov2 import MEAN, STD, read_weights

FILENAME = "dinov2_vitl14_pretrain.pth"
URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"
INTERPOLATE_OFFSET = 0.1  # DINOv2's historical kludge, kept for identical position embeddings


def resample_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + M*M, D) -> (1, 1 + grid*grid, D), the DINOv2 hub way (class token kept)."""
    n = pos.shape[1] - 1
    m = int(round(n ** 0.5))
    if m * m != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    if m == grid:
        return pos
    dtype = pos.dtype
    patch = pos[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)
    scale = (grid + INTERPOLATE_OFFSET) / m
    patch = F.interpolate(patch, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patch.shape[-2:] != (grid, grid):
        raise ValueError(f"resampling a {m}x{m} position grid gave {tuple(patch.shape[-2:])}, expected {grid}x{grid}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pos[:, :1].float(), patch], dim=1).to(dtype)


class DINOv2(FeatureExtractor):
    def __init__(self, weights: str | None = None, arch: str = "vit_large_patch14_dinov2",
                 arch_kwargs: dict | None = None, resolution: int = 224, download: bool = True):
        super().__init__()
        import timm

        # The official file is only the default for ViT-L/14; other sizes need an explicit path.
        default = arch == "vit_large_patch14_dinov2" and not arch_kwargs
        path = locate_weights(weights, FILENAME if default else f"{arch}.pth", URL if default else None,
                              f"DINOv2 ({arch})", "eval.dinov2_weights", download)
        self.net = timm.create_model(arch, pretrained=False, img_size=resolution, num_classes=0,
                                     **dict(arch_kwargs or {}))
        self.resolution = resolution
        self.dims = {"cls": self.net.num_features}
        sd = dict(read_weights(path, key="eval.dinov2_weights"))
        sd.pop("mask_token", None)  # used only for masked-image training
        if "pos_embed" in sd:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], self.net.patch_embed.grid_size[0])
        missing, unexpected = self.net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"{path} does not fit timm {arch}{' ' + str(dict(arch_kwargs)) if arch_kwargs else ''}: "
                f"missing {list(missing)[:6]}, unexpected {list(unexpected)[:6]} "
                f"(expected the DINOv2 hub file {FILENAME} or timm's vit_large_patch14_dinov2 weights)")
        self.net.eval().requires_grad_(False)
        self.weights_path = str(path)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check(images)
        x = F.interpolate(images.float(), size=(self.resolution, self.resolution), mode="bicubic", antialias=True)
        x = (x / 255 - self.mean) / self.std
        return {"cls": self.net(x).float()}
