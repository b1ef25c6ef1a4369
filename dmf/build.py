"""One builder: the composed config -> the objects every mode uses (the network with its weights, the objective,
a sampler, the decoder). Training, evaluation and the recipes call these, so a key means the same everywhere."""
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError
from dmf.models import describe_load, load_pretrained, load_weights
from dmf.models.hub import resolve_path


def build_network(cfg: DictConfig, frozen: bool = False, initialise: bool = True) -> torch.nn.Module:
    """cfg.model, initialised from cfg.ckpt when given through the one key policy (`load_pretrained`: strict names;
    REPA projectors dropped, a new log-variance head or qk-norm kept as initialised, each reported). frozen: in eval
    mode without gradients, for sampling. initialise=False: cfg.ckpt is not read (a resume brings its own weights)."""
    # a missing file fails before the model is built
    path = resolve_path(cfg.ckpt, key="ckpt") if cfg.get("ckpt") and initialise else None
    net = instantiate(cfg.model)
    if path:
        report = load_pretrained(net, path, key="ckpt")
        if frozen and report["initialised"]:  # sampling would run weights that nobody trained
            raise ConfigError(f"ckpt={cfg.ckpt} lacks weights that {cfg.model.name} samples with ({describe_load(report)}"
                              f"): it holds a flow model (or a network without qk-norm). Fix: evaluate it with the config "
                              f"it was trained with (a flow model: experiment=digits_flow, or model=sit "
                              f"sampler=flow_euler), or fine-tune it first (mode=train ckpt=<it>)")
        if report["dropped"] or report["initialised"]:
            print(f"[dmf] loaded {cfg.ckpt}: {describe_load(report)}", flush=True)
    return net.eval().requires_grad_(False) if frozen else net


def build_objective(cfg: DictConfig):
    weights = OmegaConf.select(cfg, "objective.encoder.weights")
    if weights:  # REPA's frozen encoder: its file is fetched here like every file (objectives never download)
        local = resolve_path(weights, key="objective.encoder.weights (REPA encoder)")
        cfg = cfg.copy()
        OmegaConf.update(cfg, "objective.encoder.weights", str(local))
    return instantiate(cfg.objective, time=instantiate(cfg.time), guidance=build_guidance(cfg))


def build_guidance(cfg: DictConfig):
    """cfg.guidance; a distillation teacher is built and loaded here (objectives never read files)."""
    g = cfg.guidance
    if "teacher" not in g:
        return instantiate(g)
    if OmegaConf.is_missing(g.teacher, "ckpt") or g.teacher.ckpt is None:
        raise ConfigError("guidance=distill needs guidance.teacher.ckpt=<SiT checkpoint path or hf:// URI>")
    teacher = instantiate(g.teacher.model)
    load_weights(teacher, resolve_path(g.teacher.ckpt, key="guidance.teacher.ckpt"), drop_prefixes=("projectors.",),
                 key="guidance.teacher.ckpt")
    return instantiate(g, teacher=teacher)


def build_sampler(cfg: DictConfig, steps: int):
    return instantiate(cfg.sampler, steps=int(steps))


def build_vae(cfg: DictConfig):
    vae = instantiate(cfg.data.vae)
    if isinstance(vae, torch.nn.Module):
        vae.eval().requires_grad_(False)
    return vae


def model_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(C, H, W) of the network's input space (latents, or pixels for pixel-space data)."""
    d = cfg.data
    return int(d.latent_channels), int(d.latent_size), int(d.latent_size)
