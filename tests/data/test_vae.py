"""SD-VAE through the real diffusers loading path (a tiny random AutoencoderKL saved to disk) and IdentityVAE."""
import time

import pytest
import torch
from torch import nn

from dmf.data.vae import SD_VAE_SCALE, SDVAE, IdentityVAE, VAELoadError
from tests.data.data_helpers import tiny_autoencoder


def test_sdvae_encodes_moments_and_decodes_like_the_autoencoder(tiny_vae_dir):
    vae = SDVAE(str(tiny_vae_dir))
    ref = tiny_autoencoder(0).eval()
    assert (vae.downsample, vae.latent_channels, vae.scale) == (8, 4, SD_VAE_SCALE)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    moments = vae.encode_moments(x)
    assert moments.shape == (2, 8, 8, 8) and moments.dtype == torch.float32
    with torch.no_grad():
        dist = ref.encode(x).latent_dist
        torch.testing.assert_close(moments, torch.cat([dist.mean, dist.std], 1))
        assert (moments[:, 4:] > 0).all()
        z = torch.randn(2, 4, 8, 8)
        images = vae.decode(z)
        torch.testing.assert_close(images, ref.decode(z / SD_VAE_SCALE).sample.clamp(-1, 1))
    assert images.shape == (2, 3, 64, 64) and images.abs().max() <= 1


def test_decode_path_selects_other_weights(tiny_vae_dir, tmp_path):
    other = tmp_path / "ema"
    tiny_autoencoder(seed=1).save_pretrained(other)
    vae = SDVAE(str(tiny_vae_dir), decode_path=str(other))
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        expect = tiny_autoencoder(seed=1).eval().decode(z / SD_VAE_SCALE).sample.clamp(-1, 1)
        torch.testing.assert_close(vae.decode(z), expect)
        assert not torch.allclose(SDVAE(str(tiny_vae_dir)).decode(z), expect)


def test_frozen_weights_stay_out_of_checkpoints(tiny_vae_dir):
    holder = nn.Module()
    holder.net = nn.Linear(2, 2)
    holder.vae = SDVAE(str(tiny_vae_dir))
    holder.vae.decode(torch.zeros(1, 4, 8, 8))  # loads the weights
    holder.to(torch.float64)  # .to() reaches the lazily loaded AutoencoderKL
    assert next(holder.vae._models[holder.vae.path].parameters()).dtype == torch.float64
    assert set(holder.state_dict()) == {"net.weight", "net.bias"}
    holder.load_state_dict(holder.state_dict(), strict=True)


def test_hub_id_offline_is_one_clear_fast_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.time()
    with pytest.raises(VAELoadError, match=r"stabilityai/sd-vae-ft-mse.*huggingface-cli download.*data\.vae\.path"):
        SDVAE("stabilityai/sd-vae-ft-mse")
    assert time.time() - start < 10


def test_bad_local_paths_name_the_problem(tmp_path, tiny_vae_dir):
    with pytest.raises(VAELoadError, match="no config.json"):
        SDVAE(str(tmp_path))
    with pytest.raises(VAELoadError, match="neither an existing directory nor a hub id"):
        SDVAE(str(tmp_path / "missing" / "deeper" / "vae"))
    wide = tmp_path / "wide"
    from diffusers import AutoencoderKL

    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4).save_pretrained(wide)
    with pytest.raises(VAELoadError, match="downsample"):
        SDVAE(str(tiny_vae_dir), decode_path=str(wide))


def test_full_pipeline_folder_uses_its_vae_subfolder(tiny_vae_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_vae_dir, tmp_path / "pipeline" / "vae")
    assert SDVAE(str(tmp_path / "pipeline")).downsample == 8


def test_identity_vae_is_pixel_space():
    vae = IdentityVAE()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(vae.encode_moments(x), torch.cat([x, torch.zeros_like(x)], 1))
    assert vae.decode(x) is x and vae.downsample == 1 and vae.scale == 1.0
