"""Images as the metrics see them: uint8 RGB (N, 3, H, W), plus grids and PNG files."""
from pathlib import Path

import numpy as np
import torch

from dmf.core.files import atomic_path

QUANTIZE = ("floor", "round")


def to_uint8(x: torch.Tensor, quantize: str = "floor") -> torch.Tensor:
    """Decoded images in [-1, 1] -> uint8 RGB. Gray images are replicated to 3 channels (Inception and DINOv2
    expect RGB). `floor` is what the reference DMF generate.py writes (clamp(255 (x+1)/2).to(uint8));
    `round` is EDM2's (x * 127.5 + 128).clip(0, 255)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected decoded images (N, 1|3, H, W), got {tuple(x.shape)}")
    x = x.float()
    if quantize == "floor":
        x = (255.0 * (x + 1) / 2).clamp(0, 255)
    elif quantize == "round":
        x = (x * 127.5 + 128).clamp(0, 255)
    else:
        raise ValueError(f"eval.quantize={quantize!r} must be one of {QUANTIZE}")
    x = x.to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_cell: int = 64) -> np.ndarray:
    """uint8 (N, 3, H, W) -> one uint8 (H', W', 3) grid; tiny images (digits) are upsampled (nearest) to
    `min_cell` pixels so that the grid is legible."""
    n, _, h, w = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    scale = max(1, int(np.ceil(min_cell / max(h, w))))
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    rows = int(np.ceil(n / nrow))
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for k in range(n):
        r, c = divmod(k, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = arr[k]
    return grid


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) uint8 array (atomically: a crash never leaves a truncated PNG under the final name)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)
