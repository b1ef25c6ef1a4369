"""Feature networks load through their real code paths from files (random weights here), and fail clearly."""
import time

import pytest
import torch

from dmf.eval.scoring.features import DINOv2, InceptionV3
from dmf.eval.scoring.features.dinov2 import resample_pos_embed

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DMF_OFFLINE", "1")
    return tmp_path


def random_inception_file(path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    orig = FeatureExtractorInceptionV3.load_state_dict
    FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None  # only to make a random file
    try:
        net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(path))
    except Exception:
        torch.save({}, path)
        net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(path))
    finally:
        FeatureExtractorInceptionV3.load_state_dict = orig
    torch.save(net.state_dict(), path)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    random_inception_file(path)
    return path


def test_inception_from_file(inception_file, offline_cache):
    ext = InceptionV3(weights=str(inception_file))
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = ext(images)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert torch.isfinite(out["pool"]).all() and out["pool"].dtype == torch.float32
    with pytest.raises(ValueError, match="uint8"):
        ext(torch.zeros(1, 3, 8, 8))


def test_weights_found_in_torch_hub_cache(offline_cache):
    from dmf.eval.scoring.features.inception import FILENAME, URL
    from dmf.eval.scoring.features.weights import locate_weights

    cached = offline_cache / "torch" / "hub" / "checkpoints" / FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert locate_weights(None, FILENAME, URL, "Inception-V3", "eval.inception_weights") == cached


def test_missing_weights_offline_fail_fast_and_explain(offline_cache):
    t = time.time()
    with pytest.raises(FileNotFoundError) as err:
        InceptionV3()
    msg = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and "eval.inception_weights" in msg
    assert "hub/checkpoints" in msg and time.time() - t < 1.0
    with pytest.raises(FileNotFoundError, match="eval.dinov2_weights"):
        DINOv2(weights=str(offline_cache / "nope.pth"))


def hub_format_state(seed=0):
    """A DINOv2 hub-style checkpoint for a tiny ViT/14: 37x37 position grid (518 px) and a mask token."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_large_patch14_dinov2", pretrained=False, num_classes=0, img_size=518, **TINY_VIT)
    sd = {k: v + 0.02 * torch.randn_like(v) for k, v in model.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, TINY_VIT["embed_dim"])
    return sd


def test_dinov2_tiny_loads_hub_format(tmp_path):
    sd = hub_format_state()
    torch.save(sd, tmp_path / "dino.pth")
    ext = DINOv2(weights=str(tmp_path / "dino.pth"), arch_kwargs=TINY_VIT)
    images = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    feats = ext(images)["cls"]
    assert feats.shape == (3, 32) and torch.isfinite(feats).all()
    # the position grid is resampled as the hub model does for 224 inputs: bicubic, scale (16 + 0.1) / 37
    pos = ext.net.pos_embed.detach()
    grid = sd["pos_embed"][:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, scale_factor=16.1 / 37, mode="bicubic")
    torch.testing.assert_close(pos[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 256, -1))
    torch.testing.assert_close(pos[:, :1], sd["pos_embed"][:, :1])


def test_dinov2_at_native_grid_equals_plain_timm(tmp_path):
    import timm

    sd = hub_format_state(1)
    torch.save(sd, tmp_path / "dino.pth")
    ext = DINOv2(weights=str(tmp_path / "dino.pth"), arch_kwargs=TINY_VIT, resolution=518)
    plain = timm.create_model("vit_large_patch14_dinov2", pretrained=False, num_classes=0, img_size=518, **TINY_VIT)
    plain.load_state_dict({k: v for k, v in sd.items() if k != "mask_token"})
    images = torch.randint(0, 256, (1, 3, 518, 518), dtype=torch.uint8)
    x = (images.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(ext(images)["cls"], plain.eval()(x), rtol=1e-5, atol=1e-5)
    assert resample_pos_embed(sd["pos_embed"], 37) is sd["pos_embed"]


def test_dinov2_wrong_file_is_explained(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="does not fit timm"):
        DINOv2(weights=str(tmp_path / "bad.pth"), arch_kwargs=TINY_VIT)
