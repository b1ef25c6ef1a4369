"""Shared fixtures of the objective tests: a tiny DINOv2-shaped ViT saved as the hub file is."""
import pytest
import torch

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def dinov2_file(tmp_path_factory):
    """A tiny DINOv2-shaped ViT saved as the hub file is: a 37 x 37 position grid (518 px) and a mask token."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=518, num_classes=0, **TINY_VIT)
    sd = net.state_dict()
    for p in sd.values():
        p.normal_(std=0.5)
    # a position embedding that is linear across the grid: resampling must keep it linear on the new grid
    centres = (torch.arange(37) + 0.5) / 37
    sd["pos_embed"][0, 1:] = centres.view(37, 1, 1).expand(37, 37, 32).reshape(37 * 37, 32)
    sd["mask_token"] = torch.zeros(1, 32)
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vitb14_pretrain.pth"
    torch.save(sd, path)
    return path
