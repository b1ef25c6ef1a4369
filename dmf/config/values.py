"""The early validation pass on a composed config: values and combinations that would fail late with an error naming
no key, or not fail at all, stop here with one line naming the key and the fix, before any expensive work."""
import re
from numbers import Real

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.config.kinds import guidance_kind, objective_kind
from dmf.core.cfg import check_interval
from dmf.core.errors import ConfigError
from dmf.core.options import check_known, flatten
from dmf.models.attention import get_backend
from dmf.models.compile import compile_mode
from dmf.models.registry import SIZES, check_split, parse_name
from dmf.objectives.dmf_loss import JVP_MODES
from dmf.objectives.weighting import PAIRS


def _number(cfg, key, lo=None, hi=None, integer=False):
    value = OmegaConf.select(cfg, key)
    kind = int if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if integer else 'a number'}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bound = f"be >= {lo}" if hi is None else f"be <= {hi}" if lo is None else f"lie in [{lo}, {hi}]"
        raise ConfigError(f"{key}={value} must {bound}")


def validate_model(cfg: DictConfig) -> None:
    m, d = cfg.model, cfg.data
    family, size, patch = parse_name(m.name)
    compile_mode(m.get("compile", False))
    if m.get("attention") != "auto":
        get_backend(m.attention)  # an unknown name: the error lists the registered backends
    for key in ("depth", "hidden_size", "num_heads"):  # null: the named size's; 0 would silently mean that too
        if m.get(key) is not None:
            _number(cfg, f"model.{key}", 1, integer=True)
    check_split(m.name, m.get("dmf_depth"))
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
    for key in ("omega", "g_min", "g_max"):  # each guidance file holds only its own options
        if key in cfg.guidance:
            _number(cfg, f"guidance.{key}")
    _number(cfg, "objective.cfg_prob", 0.0, 1.0)
    if cfg.objective.cfg_prob == 1.0:
        raise ConfigError("objective.cfg_prob=1.0 drops every label, so the model never learns the classes; it must "
                          "lie in [0, 1) (the paper uses 0.1)")
    if cfg.objective.cfg_prob == 0 and guidance_kind(cfg) == "mg":
        raise ConfigError("objective.cfg_prob=0 never trains the null class, which model guidance's target reads "
                          "(v + omega (v(y) - v(null))): use cfg_prob > 0 (the paper uses 0.1) or guidance=none")
    for key, allowed in (("objective.logvar_pairs", PAIRS), ("objective.jvp", JVP_MODES)):
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise ConfigError(f"{key}={value!r} must be one of {' | '.join(allowed)}")
    if "g_min" in cfg.guidance and "g_max" in cfg.guidance:  # the objective would refuse it only once built
        check_interval(cfg.guidance.g_min, cfg.guidance.g_max, ("guidance.g_min", "guidance.g_max"))
    for key in ("P_mean", "P_std", "P_mean_t", "P_std_t", "P_mean_r", "P_std_r"):
        _number(cfg, f"time.{key}")
    own_checks(cfg.time)
    if "repa_weight" in cfg.objective:  # 0 is off; a negative weight would silently be off too
        _number(cfg, "objective.repa_weight", 0.0)
    _number(cfg, "optim.lr", 0.0)
    if OmegaConf.select(cfg, "optim.warmup_steps") is not None:
        _number(cfg, "optim.warmup_steps", 0, integer=True)
    _number(cfg, "data.global_batch_size", 1, integer=True)
    if cfg.data.get("max_batch_per_device") is not None:
        _number(cfg, "data.max_batch_per_device", 1, integer=True)
    if cfg.trainer.accumulate_grad_batches != "auto":
        _number(cfg, "trainer.accumulate_grad_batches", 1, integer=True)
    if objective_kind(cfg) == "fm" and guidance_kind(cfg) != "none":
        raise ConfigError(f"objective=fm trains a flow model on the plain velocity; set guidance=none "
                          f"(got guidance._target_={cfg.guidance._target_})")
    if objective_kind(cfg) == "dmf" and parse_name(cfg.model.name)[0] not in ("DMFT", "MF"):
        raise ConfigError(f"objective=dmf needs a flow-map model (model=dmft or model=mf), got model.name={cfg.model.name}")


def validate_repa(cfg: DictConfig) -> None:
    """REPA aligns with an encoder of the raw images: latent data must deliver them (data.datamodule.images, which the
    ImageNet data configs derive from objective.repa_weight); pixel-space data is its own image."""
    weight = OmegaConf.select(cfg, "objective.repa_weight", default=0.0) or 0.0
    if weight > 0 and cfg.data.latent_downsample > 1 and not OmegaConf.select(cfg, "data.datamodule.images", default=False):
        raise ConfigError(
            f"objective.repa_weight={weight} aligns the SiT with an encoder of the raw images, but data={cfg.data.name} "
            f"delivers VAE latents without them (data.datamodule.images is false or absent). Fix: ImageNet latents "
            f"preprocessed with their images (data=imagenet256_latents or imagenet256_wds; `python run.py "
            f"mode=preprocess ... preprocess.images=true`, the default), pixel-space data (e.g. experiment=digits_flow "
            f"objective.repa_weight=0.5), or objective.repa_weight=0")


def check_target_keys(cfg: DictConfig) -> None:
    """A key added to a group that builds an object (`+sampler.gamma=0.5` on euler, `+model.foo=1`) that the object
    does not take: Hydra's instantiation would fail late, as a multi-line block (or, in a pipeline, after a stage)."""
    import inspect

    from hydra._internal.utils import _locate

    for group in ("model", "sampler", "time", "objective", "guidance"):
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        params = inspect.signature(_locate(node._target_)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        unknown = [str(k) for k in node if not str(k).startswith("_") and k not in params]
        if unknown:
            takes = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise ConfigError(f"{group}.{unknown[0]} is not an option of this {group} ({node._target_} takes "
                              f"{', '.join(takes)}): remove it, or choose the {group} it belongs to")


def own_checks(node: DictConfig) -> None:
    """Build a cheap config object (a sampler, the time proposal), which checks its own ranges: here, before any
    work, as one error line."""
    try:
        instantiate(node)
    except InstantiationException as err:
        if not isinstance(err.__cause__, (ValueError, TypeError)):  # a range, or an option it does not take
            raise
        raise ConfigError(str(err.__cause__)) from None


def validate_sampler(cfg: DictConfig) -> None:
    _number(cfg, "sampler.steps", 1, integer=True)
    for key in ("sampler.shift", "sampler.cfg_scale", "sampler.cfg_min", "sampler.cfg_max"):
        _number(cfg, key)
    if "gamma" in cfg.sampler:
        _number(cfg, "sampler.gamma")
    own_checks(cfg.sampler)  # shift > 0, the CFG interval, gamma
    if ".FlowMap" in cfg.sampler._target_ and parse_name(cfg.model.name)[0] == "SiT":
        raise ConfigError(f"sampler {cfg.sampler._target_} steps a flow map u(x, t, r), but {cfg.model.name} is a "
                          f"flow model: use sampler=flow_euler|flow_heun|flow_sde")


def validate_values(cfg: DictConfig) -> None:
    """Values that would otherwise fail late, with an error naming no key, or not fail at all (issue 8): types of
    keys the other checks compute with, ranges whose violation trains silently into garbage, fixed-size datasets."""
    for key, lo, hi in (("seed", 0, 2**32 - 1), ("data.resolution", 1, None), ("trainer.max_steps", -1, None),
                         ("trainer.num_nodes", 1, None)):
        if OmegaConf.select(cfg, key) is not None:  # seeds are mixed from 32-bit words (dmf.core.seeds)
            _number(cfg, key, lo, hi, integer=True)
    if OmegaConf.select(cfg, "trainer.max_steps") == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing and would save the initial weights as the run's "
                          "checkpoint: give a number of optimizer steps (-1: no step limit, with trainer.max_epochs)")
    decay = OmegaConf.select(cfg, "ema.decay")
    if decay is not None:
        _number(cfg, "ema.decay")
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema.decay={decay} must lie in [0, 1) (each step keeps `decay` of the average; "
                              f"values >= 1 stop or blow up the EMA weights); the paper uses 0.9999")
    g, kind = cfg.get("guidance"), guidance_kind(cfg)
    if kind in ("mg", "distill"):
        _number(cfg, "guidance.omega")
        hi = {"mg": 1.0, "distill": 10.0}[kind]
        if not 0.0 <= g.omega < hi:
            why = ("model guidance v + omega (v(y) - v(null)) acts as CFG scale 1 / (1 - omega): omega >= 1 has no "
                   "fixed point" if kind == "mg" else "the teacher's CFG scale; larger values only saturate images")
            usual = "the paper uses 0.6" if kind == "mg" else "2.5 matches mg's 0.6"
            raise ConfigError(f"guidance.omega={g.omega} must lie in [0, {hi}) for guidance={kind} ({why}); {usual}")
    fixed = OmegaConf.select(cfg, "data.fixed_resolution")
    if fixed is not None and cfg.data.resolution != fixed:
        raise ConfigError(f"data.resolution={cfg.data.resolution}: data={cfg.data.get('name')} only has "
                          f"{fixed}x{fixed} images; set data.resolution={fixed} or choose another dataset")
    t = cfg.get("trainer")
    if t is not None and t.get("on_nonfinite") not in (None, "stop", "skip"):
        raise ConfigError(f"trainer.on_nonfinite={t.on_nonfinite!r} must be stop or skip")
    if t is not None and t.get("max_nonfinite_skips") is not None:
        _number(cfg, "trainer.max_nonfinite_skips", 0, integer=True)


# keys whose default is true/false but that also take words (or, fast_dev_run, a number of batches)
WORDS_TOO = ("model.compile", "trainer.deterministic", "trainer.fast_dev_run")


# the keys of the data configs (conf/data/*.yaml; a test keeps the two equal): read one by one, so a misspelt
# global_batch_size in an experiment file would train at the data config's batch
DATA_KEYS = ("name", "resolution", "fixed_resolution", "channels", "num_classes", "latent_downsample",
             "latent_channels", "latent_size", "root", "format", "on_error", "vae", "global_batch_size",
             "max_batch_per_device", "datamodule")


def check_data_keys(cfg: DictConfig) -> None:
    """A data key is one the code reads, or one named in any of the config's interpolations (a helper key of a
    user's dataset config: `${data.my_root}/train`, `${.my_root}`, `${oc.select:data.my_root,x}`, in lists too)."""
    if "data" not in cfg:
        return
    text = OmegaConf.to_yaml(cfg, resolve=False)
    named = {word for expr in re.findall(r"\$\{([^}]*)", text) for word in re.findall(r"\w+", expr)}
    check_known("data", cfg.data, (*DATA_KEYS, *sorted(set(cfg.data) & named - set(DATA_KEYS))))


# words meaning false, which as text count as true; and keys whose values are free text (a table's title, a row's
# label: a guidance on/off ablation may well label a row "off")
FALSE_WORDS = ("false", "no", "off")
FREE_TEXT = ("title", "label", "note", "name", "project", "group", "notes", "tags")


def check_text_booleans(cfg: DictConfig) -> None:
    """A boolean written as text: `overwrite: "no"` quoted in a file, or `eval.save_png=no` typed for a key whose
    default is null (typed_booleans sees only keys that default to true/false). Python reads any text as true."""
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        if isinstance(value, str) and value.lower() in FALSE_WORDS and key not in WORDS_TOO \
                and key.rsplit(".", 1)[-1] not in FREE_TEXT:
            raise ConfigError(f"{key}={value!r} is text, which counts as true: write false, unquoted")


def validate(cfg: DictConfig) -> None:
    """Checks that concern the pieces every mode builds; each piece also re-checks its own arguments."""
    check_data_keys(cfg)
    check_text_booleans(cfg)
    check_target_keys(cfg)
    try:
        validate_values(cfg)
        validate_model(cfg)
        validate_training(cfg)
        validate_repa(cfg)
        validate_sampler(cfg)
    except ValueError as err:
        raise ConfigError(f"invalid config: {err}") from None
