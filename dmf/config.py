"""Config resolvers and the early validation pass: one clear error before any expensive work."""
from numbers import Real

from omegaconf import DictConfig, OmegaConf

from dmf.models.registry import SIZES, parse_name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("dmf.div"):
        OmegaConf.register_new_resolver("dmf.div", lambda a, b: int(a) // int(b))
    if not OmegaConf.has_resolver("dmf.keys"):  # a paper table's rows as a sweep: "a,b,c"
        OmegaConf.register_new_resolver("dmf.keys", lambda node: ",".join(str(k) for k in node))
    if not OmegaConf.has_resolver("dmf.if_positive"):  # e.g. REPA projectors only when objective.repa_weight > 0
        OmegaConf.register_new_resolver("dmf.if_positive", lambda value, then, other: then if float(value) > 0 else other)


class ConfigError(ValueError):
    pass


def _number(cfg, key, lo=None, hi=None, integer=False):
    value = OmegaConf.select(cfg, key)
    kind = int if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if integer else 'a number'}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key}={value} must lie in [{lo}, {hi}]")


def validate_model(cfg: DictConfig) -> None:
    m, d = cfg.model, cfg.data
    family, size, patch = parse_name(m.name)
    depth = m.get("depth") or SIZES[size][0]
    if family == "DMFT":
        _number(cfg, "model.dmf_depth", integer=True)
        if not 0 < m.dmf_depth < depth:
            raise ConfigError(
                f"model.dmf_depth={m.dmf_depth} must satisfy 0 < dmf_depth < depth={depth} of {m.name} "
                f"(encoder blocks see t, decoder blocks see r)"
            )
    factor = d.latent_downsample * patch
    if d.resolution % factor:
        raise ConfigError(
            f"data.resolution={d.resolution} is not divisible by {factor} (VAE downsampling {d.latent_downsample} "
            f"x patch {patch} of {m.name}); choose a resolution that is a multiple of {factor}"
        )


def validate_training(cfg: DictConfig) -> None:
    for key in ("guidance.omega", "guidance.g_min", "guidance.g_max"):
        _number(cfg, key)
    _number(cfg, "objective.cfg_prob", 0.0, 1.0)
    for key in ("P_mean", "P_std", "P_mean_t", "P_std_t", "P_mean_r", "P_std_r"):
        _number(cfg, f"time.{key}")
    _number(cfg, "optim.lr", 0.0)
    if "FlowMatching" in cfg.objective._target_ and cfg.guidance.type != "none":
        raise ConfigError(f"objective=fm trains a flow model on the plain velocity; set guidance=none "
                          f"(got guidance.type={cfg.guidance.type})")
    if "DMF" in cfg.objective._target_ and parse_name(cfg.model.name)[0] not in ("DMFT", "MF"):
        raise ConfigError(f"objective=dmf needs a flow-map model (model=dmft or model=mf), got model.name={cfg.model.name}")


def validate_repa(cfg: DictConfig) -> None:
    """REPA aligns with an encoder of the raw images: latent data must carry them (pixel-space data is its own)."""
    weight = OmegaConf.select(cfg, "objective.repa_weight", default=0.0) or 0.0
    if weight > 0 and cfg.data.latent_downsample > 1 and not OmegaConf.select(cfg, "data.datamodule.images", default=False):
        raise ConfigError(
            f"objective.repa_weight={weight} aligns the SiT with an encoder of the raw images, but data={cfg.data.name} "
            f"yields VAE latents without them (the latent datamodules do not deliver images yet). Fix: train REPA on "
            f"pixel-space data (e.g. experiment=digits_flow objective.repa_weight=0.5), start DMF from the published "
            f"SiT-XL/2+REPA checkpoint, or set objective.repa_weight=0")


def validate_sampler(cfg: DictConfig) -> None:
    _number(cfg, "sampler.steps", 1, integer=True)
    for key in ("sampler.shift", "sampler.cfg_scale", "sampler.g_min", "sampler.g_max"):
        _number(cfg, key)


def validate(cfg: DictConfig) -> None:
    """Checks that concern the pieces every mode builds; each piece also re-checks its own arguments."""
    try:
        validate_model(cfg)
        validate_training(cfg)
        validate_repa(cfg)
        validate_sampler(cfg)
    except ValueError as err:
        raise ConfigError(f"invalid config: {err}") from None
