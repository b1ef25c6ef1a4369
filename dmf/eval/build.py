"""Building what evaluation needs from the composed config: network with weights, decoder, samplers, scorer."""
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.models import load_pretrained
from dmf.models.hub import resolve_path


def build_network(cfg: DictConfig) -> torch.nn.Module:
    """cfg.model with the EMA weights of cfg.ckpt, frozen for sampling (strict names; REPA projectors, unused when
    sampling, are dropped and a missing log-variance head keeps its initialisation). The eval entry has already
    checked that cfg.ckpt is set."""
    path = resolve_path(cfg.ckpt)  # before building: a missing file fails fast
    net = instantiate(cfg.model)
    load_pretrained(net, path, key="ckpt")
    return net.eval().requires_grad_(False)


def build_vae(cfg: DictConfig):
    vae = instantiate(cfg.data.vae)
    if isinstance(vae, torch.nn.Module):
        vae.eval().requires_grad_(False)
    return vae


def build_sampler(cfg: DictConfig, steps: int):
    return instantiate(cfg.sampler, steps=int(steps))


def model_shape(cfg: DictConfig) -> tuple[int, int, int]:
    d = cfg.data
    return int(d.latent_channels), int(d.latent_size), int(d.latent_size)


def container(node) -> object:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.eval.out_dir).expanduser()
