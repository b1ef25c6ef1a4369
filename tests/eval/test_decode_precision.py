"""eval.decode_precision: the VAE decode in fp32 or under bf16 autocast (docs/eval.md)."""
import pytest
import torch

from dmf.data.vae import IdentityVAE, SDVAE
from dmf.eval.generation.loop import Plan, Renderer
from dmf.eval.validate import validate_eval
from dmf.sampling import build_sampler
from tests.data.data_helpers import tiny_autoencoder
from tests.eval.eval_helpers import compose, tiny_net


class NoiseAsSample:
    """A sampler that returns its noise: isolates the decode (latents with unit variance, like SD latents)."""
    steps = 1

    def __call__(self, net, noise, y):
        return noise


def render(vae, precision, shape):
    plan = Plan(8, 0, shape, 10, batch_size=8)
    return Renderer(None, NoiseAsSample(), vae, "cpu", decode_precision=precision)(plan, torch.arange(8))[0]


def test_bf16_decode_changes_few_pixels_by_few_levels(tmp_path):
    tiny_autoencoder(0).save_pretrained(tmp_path / "vae")  # a small random SD-style VAE, real loading path
    vae = SDVAE(path=str(tmp_path / "vae"))
    fp32, bf16 = (render(vae, p, (4, 8, 8)).int() for p in ("fp32", "bf16"))
    assert fp32.shape == bf16.shape == (8, 3, 64, 64) and fp32.dtype == torch.int32
    diff = (fp32 - bf16).abs()
    assert diff.max() > 0  # the setting reaches the decoder
    assert diff.float().mean() < 2.0 and (diff <= 4).float().mean() > 0.95


def test_pixel_space_decode_is_unchanged_by_the_setting():
    # the digits default decodes with IdentityVAE: nothing to compute, so bf16 changes no pixel (and no FD)
    assert torch.equal(render(IdentityVAE(), "fp32", (1, 8, 8)), render(IdentityVAE(), "bf16", (1, 8, 8)))


def test_unknown_decode_precision_is_rejected_by_name():
    cfg = compose(["mode=eval", "eval=digits", "eval.decode_precision=fp16"])
    with pytest.raises(ValueError, match="eval.decode_precision='fp16' must be one of"):
        validate_eval(cfg)
    with pytest.raises(ValueError, match="eval.decode_precision"):
        Renderer(tiny_net(), build_sampler("euler", steps=1), IdentityVAE(), "cpu", decode_precision="half")


def test_an_output_folder_that_is_a_file_stops_before_generating(tmp_path):
    (tmp_path / "out").write_text("x")
    cfg = compose(["mode=eval", "eval=digits", f"eval.out_dir={tmp_path / 'out'}"])
    with pytest.raises(ValueError, match="eval.out_dir=.* is a file"):
        validate_eval(cfg)
