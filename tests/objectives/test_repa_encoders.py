"""REPA's frozen encoders: DINOv2 ViT-B/14 as the authors feed it (random weights from a file, through the real
loading path), the digits stand-in, and REPA pretraining end to end on the digits."""
import pytest
import torch
import torch.nn.functional as F

from dmf.build import build_objective
from dmf.config import ConfigError, validate
from dmf.digits.data import load_digits_tensors
from dmf.models import build_model, load_pretrained
from dmf.digits.repa_encoder import DigitsEncoder, DigitsTokenNet, augment, nt_xent, train_token_net
from dmf.objectives.encoders.dinov2 import DINOv2Encoder
from dmf.train.entry import train
from tests.helpers import compose_config
from tests.objectives.conftest import TINY_VIT


def test_dinov2_encoder_follows_the_authors_preprocessing(dinov2_file):
    enc = DINOv2Encoder(weights=str(dinov2_file), resolution=256, arch_kwargs=TINY_VIT)
    images = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    (z,) = enc(images)
    assert z.shape == (2, 256, 32) and enc.z_dims == (32,)
    # the authors: x / 255, ImageNet mean/std, then bicubic to 224; features = normalised patch tokens
    x = (images.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.interpolate(x, size=(224, 224), mode="bicubic")
    h = enc.net.patch_embed(x)
    h = torch.cat([enc.net.cls_token.expand(2, -1, -1), h], 1) + enc.net.pos_embed
    for block in enc.net.blocks:
        h = block(h)
    assert torch.allclose(z, F.layer_norm(h, (32,), enc.net.norm.weight, enc.net.norm.bias, 1e-6)[:, 1:], atol=1e-5)
    # images in [-1, 1] (the data's float convention) give the same features
    (z_float,) = enc(images.float() / 127.5 - 1)
    assert torch.allclose(z, z_float, atol=1e-4)
    # the 37x37 grid was resampled to 16x16: a linear ramp stays the ramp of the new cell centres (inside)
    ramp = enc.net.pos_embed[0, 1:, 0].view(16, 16)
    assert torch.allclose(ramp[3:13, 5], (torch.arange(3, 13) + 0.5) / 16, atol=2e-3)


def test_dinov2_encoder_at_512_uses_a_32x32_grid(dinov2_file):
    enc = DINOv2Encoder(weights=str(dinov2_file), resolution=512, arch_kwargs=TINY_VIT)
    assert enc.input_size == 448
    (z,) = enc(torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8))
    assert z.shape == (1, 1024, 32)


def test_dinov2_encoder_errors_name_the_key_and_the_fix(dinov2_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    offline = compose_config(["experiment=sit_xl_256_repa", "ckpt=none.pt"])
    with pytest.raises(FileNotFoundError, match=r"objective.encoder.weights.*HF_HUB_OFFLINE.*hf download"):
        build_objective(offline)  # the experiment's hf:// weights, not in an empty cache: the builder says so
    with pytest.raises(FileNotFoundError, match="is not a local file"):
        DINOv2Encoder(weights=offline.objective.encoder.weights)  # the encoder itself never downloads
    with pytest.raises(RuntimeError, match="does not fit timm vit_base_patch14_dinov2"):
        DINOv2Encoder(weights=str(dinov2_file), arch_kwargs={**TINY_VIT, "depth": 2})  # a file for another ViT
    with pytest.raises(ValueError, match="multiple of 256"):
        DINOv2Encoder(weights=str(dinov2_file), resolution=384, arch_kwargs=TINY_VIT)


@pytest.fixture(scope="module")
def digits_encoder_file(tmp_path_factory):
    net = train_token_net(epochs=3)
    path = tmp_path_factory.mktemp("digits_encoder") / "encoder.pt"
    torch.save({"state_dict": net.state_dict(), "dim": 64}, path)
    return path


def test_digits_encoder_learns_invariant_tokens_without_labels(digits_encoder_file):
    enc = DigitsEncoder(weights=str(digits_encoder_file))
    x = load_digits_tensors()[0]
    (z,) = enc(x)
    assert z.shape == (len(x), 16, 64) and not z.requires_grad

    def contrastive_loss(net):  # two fresh augmentations of 512 digits: is each closest to its own twin?
        g = torch.Generator().manual_seed(123)
        xb = x[:512]
        with torch.no_grad():
            return nt_xent(net.head(net.tokens(augment(xb, g)).mean(1)), net.head(net.tokens(augment(xb, g)).mean(1)),
                           0.2).item()

    torch.manual_seed(0)
    assert contrastive_loss(enc.net) < 0.8 * contrastive_loss(DigitsTokenNet())


def test_digits_encoder_trains_once_and_caches(tmp_path, monkeypatch):
    import dmf.digits.repa_encoder as digits

    monkeypatch.setenv("DMF_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(digits, "train_token_net", lambda dim: calls.append(dim) or DigitsTokenNet(dim))
    first = DigitsEncoder()
    assert (tmp_path / digits.CACHE_NAME).exists() and calls == [64]
    second = DigitsEncoder()
    assert calls == [64]  # read from the cache, not trained again
    x = load_digits_tensors()[0][:4]
    assert torch.equal(first(x)[0], second(x)[0])
    with pytest.raises(FileNotFoundError, match="objective.encoder.weights"):
        DigitsEncoder(weights=str(tmp_path / "nope.pt"))


def test_repa_on_latents_without_images_is_refused_before_any_work():
    # the ImageNet data configs deliver the images exactly when the objective aligns with them
    for exp in ("sit_xl_256_repa", "sit_xl_512_repa"):
        for data in ("imagenet256_latents", "imagenet256_wds"):
            cfg = compose_config([f"experiment={exp}", f"data={data}"])
            validate(cfg)
            assert cfg.data.datamodule.images is True
    assert compose_config(["experiment=sit_xl_256_repa", "objective.repa_weight=0"]).data.datamodule.images is False
    assert compose_config(["experiment=dmf_xl_256"]).data.datamodule.images is False
    # latent data that cannot deliver them is refused by the config check
    for extra in (["data.datamodule.images=false"], ["data=synthetic"]):
        with pytest.raises(ConfigError, match="objective.repa_weight=0.5 aligns .* raw images.*preprocess.images=true"):
            validate(compose_config(["experiment=sit_xl_256_repa", *extra]))


@pytest.mark.slow
def test_repa_pretraining_on_digits_end_to_end(tmp_path, digits_encoder_file):
    overrides = ["experiment=digits_flow", "objective.repa_weight=0.5", f"objective.encoder.weights={digits_encoder_file}",
                 f"run_dir={tmp_path / 'flow'}", "model.depth=2", "model.hidden_size=32", "model.num_heads=2",
                 "data.global_batch_size=16", "trainer.max_steps=3", "trainer.log_every_n_steps=1",
                 "callbacks.progress.refresh_rate=0"]
    cfg = compose_config(overrides)
    validate(cfg)
    assert list(cfg.model.z_dims) == [64]
    module = train(cfg)
    rows = (tmp_path / "flow" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    repa = [float(v) for v in (r.split(",")[rows[0].split(",").index("train/repa")] for r in rows[1:]) if v]
    # - mean cosine similarity, and three steps already align the projected block-2 state with the encoder
    assert len(repa) == 3 and all(-1 <= v <= 1 for v in repa) and repa[-1] < repa[0] - 0.1
    assert module.trainer.global_step == 3
    # the REPA checkpoint initialises a DMFT and the MeanFlow baseline, projectors dropped
    ckpt = tmp_path / "flow" / "checkpoints" / "last.ckpt"
    for name in ("DMFT-T/2", "MF-T/2"):
        kw = dict(input_size=8, in_channels=1, num_classes=10, depth=2, hidden_size=32, num_heads=2)
        net = build_model(name, dmf_depth=1 if name.startswith("DMFT") else None, **kw)
        assert any(k.startswith("projectors.") for k in load_pretrained(net, ckpt)["dropped"])
    # without REPA the flow model has no projectors and no encoder is built
    plain = compose_config(["experiment=digits_flow"])
    assert list(plain.model.z_dims) == []
