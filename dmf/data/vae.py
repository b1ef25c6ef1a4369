"""Autoencoders between images in [-1, 1] and model space.

Interface shared by every VAE here: attributes `downsample`, `scale`, `latent_channels`;
`encode_moments(images) -> (N, 2C, H/d, W/d)` posterior [mean, std]; `decode(z) -> images in [-1, 1]`
where z is in model space (already multiplied by `scale`).
"""
import json
import re
from pathlib import Path

import torch
from torch import nn

from dmf.core.errors import UsageError
from dmf.core.offline import downloads_off, offline_variable

SD_VAE_SCALE = 0.18215
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class VAELoadError(UsageError, RuntimeError):
    """The VAE weights cannot be found or loaded; the message says how to provide them."""


class IdentityVAE(nn.Module):
    """Pixel space: the model sees images directly (downsample 1, moments = (image, 0))."""

    downsample = 1
    scale = 1.0
    latent_channels = None  # same as the image channels

    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, torch.zeros_like(images)], dim=1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


def resolve_vae_dir(path: str) -> Path:
    """A local directory holding an AutoencoderKL (config.json + weights) for a local path or hub id.

    A local path may also be a full diffusers pipeline directory (its `vae/` subfolder is used).
    Hub ids go through the huggingface_hub cache: a cached copy is used without network access.
    """
    path = str(path)
    local = Path(path).expanduser()
    if local.exists():
        for cand in (local, local / "vae"):
            if (cand / "config.json").is_file():
                return cand
        raise VAELoadError(f"VAE path {local} exists but holds no config.json (nor vae/config.json): expected a "
                           f"diffusers AutoencoderKL directory (e.g. `huggingface-cli download "
                           f"stabilityai/sd-vae-ft-mse --local-dir {local}`)")
    if not _HUB_ID.match(path):
        raise VAELoadError(f"VAE {path!r} is neither an existing directory nor a hub id like "
                           f"'stabilityai/sd-vae-ft-mse'")
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "*.safetensors"]
    try:  # the cache first: no network round trip (and no ~20 s of retries when offline)
        return Path(snapshot_download(path, allow_patterns=patterns, local_files_only=True))
    except Exception as err:
        if downloads_off():
            raise VAELoadError(f"the VAE {path!r} is not in the Hugging Face cache and {offline_variable()} is set: "
                               f"download it on a connected machine (`huggingface-cli download {path} --local-dir "
                               f"/some/dir`) and pass data.vae.path=/some/dir") from err
    try:
        return Path(snapshot_download(path, allow_patterns=patterns))
    except Exception as err:
        raise VAELoadError(
            f"cannot load the VAE {path!r} from the Hugging Face hub ({type(err).__name__}: {err}). Without "
            f"network access, download it on a machine that has it (`huggingface-cli download {path} "
            f"--local-dir /some/dir`), copy it here and pass the directory, e.g. data.vae.path=/some/dir "
            f"(or fill the huggingface_hub cache, HF_HOME).") from err


def _load_autoencoder(directory: Path):
    from diffusers import AutoencoderKL

    try:
        model = AutoencoderKL.from_pretrained(str(directory), low_cpu_mem_usage=False)
    except Exception as err:
        raise VAELoadError(f"cannot load an AutoencoderKL from {directory} ({type(err).__name__}: {err})") from err
    return model.eval().requires_grad_(False)


class SDVAE(nn.Module):
    """The Stable Diffusion VAE through diffusers' AutoencoderKL.

    `path` encodes (training latents use sd-vae-ft-mse); `decode_path` decodes (the paper samples with
    sd-vae-ft-ema); null means the same weights. Both are resolved when the object is built, so a
    missing download fails before any work; the weights load on first use, so training (which only
    decodes preview grids) never holds an encoder it does not need.

    The AutoencoderKL modules are kept outside the module tree on purpose: a LightningModule that
    holds this VAE must not save 80M frozen parameters into every checkpoint, nor expect them on load.
    `.to(device)` still moves them (see `_apply`).
    """

    def __init__(self, path: str = "stabilityai/sd-vae-ft-mse", decode_path: str | None = None,
                 scale: float = SD_VAE_SCALE):
        super().__init__()
        self.path = str(path)
        self.decode_path = str(decode_path) if decode_path else self.path
        self.scale = float(scale)
        self._dirs = {p: resolve_vae_dir(p) for p in {self.path, self.decode_path}}
        enc_cfg, dec_cfg = (self._config(p) for p in (self.path, self.decode_path))
        self.latent_channels = int(enc_cfg["latent_channels"])
        self.downsample = 2 ** (len(enc_cfg["block_out_channels"]) - 1)
        dec_geometry = (int(dec_cfg["latent_channels"]), 2 ** (len(dec_cfg["block_out_channels"]) - 1))
        if dec_geometry != (self.latent_channels, self.downsample):
            raise VAELoadError(f"decode VAE {self.decode_path!r} has (latent_channels, downsample) {dec_geometry} "
                               f"but the encode VAE {self.path!r} has {(self.latent_channels, self.downsample)}")
        self._models: dict[str, nn.Module] = {}
        # a buffer only to follow .to()/.cuda(): lazily loaded weights go where this lives
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def _config(self, path: str) -> dict:
        return json.loads((self._dirs[path] / "config.json").read_text())

    def _model(self, path: str) -> nn.Module:
        if path not in self._models:
            self._models[path] = _load_autoencoder(self._dirs[path]).to(self._device_anchor.device)
        return self._models[path]

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for model in self._models.values():
            model._apply(fn, recurse)
        return self

    @torch.no_grad()
    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1] -> (N, 2C, H/8, W/8) float32 [mean, std]."""
        model = self._model(self.path)
        param = next(model.parameters())
        dist = model.encode(images.to(param.device, param.dtype)).latent_dist
        return torch.cat([dist.mean, dist.std], dim=1).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z in model space (latent * scale) -> images (N, 3, 8h, 8w) in [-1, 1], float32."""
        model = self._model(self.decode_path)
        param = next(model.parameters())
        images = model.decode(z.to(param.device, param.dtype) / self.scale).sample
        return images.float().clamp(-1, 1)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, decode_path={self.decode_path!r}, scale={self.scale}"


def vae_identity(vae) -> str:
    """A string that names the encoder weights, recorded with preprocessed data to detect mix-ups."""
    if isinstance(vae, SDVAE):
        return f"SDVAE({vae.path})"
    return type(vae).__name__
