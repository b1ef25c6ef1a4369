"""Config resolvers and the early validation pass: one clear error before any expensive work."""
import hashlib
import itertools
from numbers import Real

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError
from dmf.core.launch_time import launch_time
from dmf.core.options import check_known
from dmf.models.attention import get_backend
from dmf.models.compile import compile_mode
from dmf.models.registry import SIZES, check_split, parse_name
from dmf.objectives.dmf_loss import JVP_MODES
from dmf.objectives.weighting import PAIRS


def launcher_value(key: str, default):
    """`${dmf.launcher:tasks_per_node,auto}`: the Hydra launcher's field, or `default` where the launcher (the
    plain local one) or Hydra itself (compose in tests) has none."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return default
    value = HydraConfig.get().launcher.get(key)
    return default if value is None else value


def job_dir_name(override_dirname: str, limit: int = 120) -> str:
    """A sweep job's folder name from its overrides, cut to `limit` characters with a hash of the whole kept at
    the end when longer (file systems refuse names over 255 bytes; the full overrides are in .hydra/)."""
    if len(override_dirname) <= limit:
        return override_dirname or "job"
    digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
    return f"{override_dirname[:limit - 12]}-~{digest}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("dmf.div"):
        OmegaConf.register_new_resolver("dmf.div", lambda a, b: int(a) // int(b))
    if not OmegaConf.has_resolver("dmf.job_dir"):
        OmegaConf.register_new_resolver("dmf.job_dir", lambda name: job_dir_name(str(name)))
    if not OmegaConf.has_resolver("dmf.launcher"):
        OmegaConf.register_new_resolver("dmf.launcher", launcher_value)
    if not OmegaConf.has_resolver("dmf.keys"):  # a paper table's rows as a sweep: "a,b,c"
        OmegaConf.register_new_resolver("dmf.keys", lambda node: ",".join(str(k) for k in node))
    if not OmegaConf.has_resolver("dmf.if_positive"):  # e.g. REPA projectors only when objective.repa_weight > 0
        OmegaConf.register_new_resolver("dmf.if_positive", lambda value, then, other: then if float(value) > 0 else other)
    if not OmegaConf.has_resolver("dmf.first_set"):  # e.g. mode=collect's folder: dir= if given, else the table's
        OmegaConf.register_new_resolver("dmf.first_set", lambda *values: next(v for v in values if v is not None))
    if not OmegaConf.has_resolver("dmf.launch_time"):  # a run folder's stamp, the same on every torchrun rank
        # use_cache, as Hydra's own `now`: the value travels inside the config to SLURM jobs, which would otherwise
        # stamp their own time and so another sweep folder
        OmegaConf.register_new_resolver("dmf.launch_time", launch_time, use_cache=True)


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
    for key, allowed in (("objective.logvar_pairs", PAIRS), ("objective.jvp", JVP_MODES)):
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise ConfigError(f"{key}={value!r} must be one of {' | '.join(allowed)}")
    for key in ("P_mean", "P_std", "P_mean_t", "P_std_t", "P_mean_r", "P_std_r"):
        _number(cfg, f"time.{key}")
    _number(cfg, "optim.lr", 0.0)
    if OmegaConf.select(cfg, "optim.warmup_steps") is not None:
        _number(cfg, "optim.warmup_steps", 0, integer=True)
    _number(cfg, "data.global_batch_size", 1, integer=True)
    if cfg.data.get("max_batch_per_device") is not None:
        _number(cfg, "data.max_batch_per_device", 1, integer=True)
    if cfg.trainer.accumulate_grad_batches != "auto":
        _number(cfg, "trainer.accumulate_grad_batches", 1, integer=True)
    if "FlowMatching" in cfg.objective._target_ and not cfg.guidance._target_.endswith(".NoGuidance"):
        raise ConfigError(f"objective=fm trains a flow model on the plain velocity; set guidance=none "
                          f"(got guidance._target_={cfg.guidance._target_})")
    if "DMF" in cfg.objective._target_ and parse_name(cfg.model.name)[0] not in ("DMFT", "MF"):
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


def validate_sampler(cfg: DictConfig) -> None:
    _number(cfg, "sampler.steps", 1, integer=True)
    for key in ("sampler.shift", "sampler.cfg_scale", "sampler.cfg_min", "sampler.cfg_max"):
        _number(cfg, key)
    if "gamma" in cfg.sampler:
        _number(cfg, "sampler.gamma")
    try:  # the sampler checks its own ranges (shift > 0, the CFG interval, gamma): here, before any work
        instantiate(cfg.sampler)
    except InstantiationException as err:
        if not isinstance(err.__cause__, ValueError):
            raise
        raise ConfigError(str(err.__cause__)) from None
    if ".FlowMap" in cfg.sampler._target_ and parse_name(cfg.model.name)[0] == "SiT":
        raise ConfigError(f"sampler {cfg.sampler._target_} steps a flow map u(x, t, r), but {cfg.model.name} is a "
                          f"flow model: use sampler=flow_euler|flow_heun|flow_sde")


def validate_values(cfg: DictConfig) -> None:
    """Values that would otherwise fail late, with an error naming no key, or not fail at all (issue 8): types of
    keys the other checks compute with, ranges whose violation trains silently into garbage, fixed-size datasets."""
    for key, lo, hi in (("seed", 0, 2**32 - 1), ("data.resolution", 1, None), ("trainer.max_steps", -1, None)):
        if OmegaConf.select(cfg, key) is not None:  # seeds are mixed from 32-bit words (dmf.core.seeds)
            _number(cfg, key, lo, hi, integer=True)
    decay = OmegaConf.select(cfg, "ema.decay")
    if decay is not None:
        _number(cfg, "ema.decay")
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema.decay={decay} must lie in [0, 1) (each step keeps `decay` of the average; "
                              f"values >= 1 stop or blow up the EMA weights); the paper uses 0.9999")
    g = cfg.get("guidance")
    kind = {"ModelGuidance": "mg", "DistillGuidance": "distill"}.get(str(g.get("_target_", "")).rsplit(".", 1)[-1]) \
        if g is not None else None
    if kind:
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


# the model group that builds each family (conf/model/<group>.yaml)
MODEL_GROUPS = {"DMFT": "dmft", "MF": "mf", "SiT": "sit"}


def validate_choices(cfg: DictConfig, choices, typed: list[str]) -> None:
    """Checks of the config groups this launch chose (Hydra's runtime choices; `typed`: the command line's
    overrides): a group that a value set after it (an experiment's model.name) would silently contradict. run.py
    calls it once, at the top: configs composed inside a job (pipeline stages, paper rows) have their own choices."""
    model = choices.get("model") if any(o.lstrip("+~").startswith("model=") for o in typed) else None
    try:
        family = parse_name(cfg.model.name)[0]
    except ValueError:  # validate() names a malformed model.name
        family = None
    if model in MODEL_GROUPS.values() and family and MODEL_GROUPS[family] != model:
        wanted = next(f for f, group in MODEL_GROUPS.items() if group == model)
        source = f" (set by experiment={choices['experiment']})" if choices.get("experiment") else ""
        raise ConfigError(f"model={model} but model.name={cfg.model.name}{source} would build a {family}: pass the "
                          f"name too, e.g. model={model} model.name={wanted}-{cfg.model.name.split('-', 1)[1]}")
    debug = choices.get("debug")
    if debug == "tiny" and cfg.data.get("name") != "digits":
        raise ConfigError(f"debug=tiny is for the digits experiments (data={cfg.data.get('name')} here); to smoke-test "
                          f"an ImageNet experiment on a CPU use data=synthetic with a small network and a random-init "
                          f"ckpt (docs/training.md, 'Smoke-testing an ImageNet experiment')")


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`; `hydra/launcher=x` -> `hydra/launcher`."""
    return override.split("=", 1)[0].lstrip("+~")


# keys whose default is true/false but that also take words (or, fast_dev_run, a number of batches)
WORDS_TOO = ("model.compile", "trainer.deterministic", "trainer.fast_dev_run")


def typed_booleans(cfg: DictConfig, given: dict[str, str]) -> None:
    """`eval.overwrite=no`: Hydra keeps a word it does not read as a boolean as text, which Python takes as true
    (the result would be deleted). A key whose value without the command line is true/false must stay so."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    def value(config, key):
        try:
            return OmegaConf.select(config, key, default=None)
        except Exception:  # noqa: BLE001 -- an interpolation that resolves only later is no boolean typed here
            return None

    typed = {k: value(cfg, k) for k, o in given.items()
             if "." in k and not k.startswith("hydra.") and not o.startswith(("+", "~")) and k not in WORDS_TOO}
    values = [k for k, v in typed.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    if not values or not GlobalHydra.instance().is_initialized():
        return
    choices = [o for k, o in given.items() if "." not in k and not k.startswith("hydra")]  # the groups, no values
    base = compose(config_name="config", overrides=choices)
    for key in values:
        if isinstance(value(base, key), bool):
            raise ConfigError(f"{given[key]}: {key} is true or false (Hydra keeps any other word as text, which "
                              f"counts as true)")


def validate_typed(cfg: DictConfig, typed: list[str]) -> None:
    """Keys typed on the command line that this launch would not read, or would read otherwise than meant: said,
    not dropped. run.py calls it once; recipes (mode=pipeline, paper rows) refuse the keys they set per stage
    themselves."""
    given = {override_key(o): o for o in typed}
    typed_booleans(cfg, given)
    mode = cfg.mode._target_.rsplit(".", 1)[-1]
    if "sampler.steps" in given and mode in ("evaluate", "sample") and cfg.eval.steps:
        counts = list(cfg.eval.steps)
        raise ConfigError(f"{given['sampler.steps']} is not used: eval.steps={counts} lists the step counts this "
                          f"run samples at (null means sampler.steps); type eval.steps=[{cfg.sampler.steps}] instead")
    if "sampler.steps" in given and mode == "train":
        raise ConfigError(f"{given['sampler.steps']} is not used by mode=train: training samples only in its "
                          f"callbacks (callbacks=with_eval), at callbacks.sample_grid.steps and callbacks.fid.steps")
    pair = [o for k, o in given.items() if k in ("time.P_mean_t", "time.P_std_t", "time.P_mean_r", "time.P_std_r")]
    if pair and "FlowMatching" in cfg.objective._target_:
        raise ConfigError(f"{pair[0]} is not used: objective=fm (a flow model) draws one time from time.P_mean and "
                          f"time.P_std; the (t, r) proposal keys shape objective=dmf")
    options = [o for k, o in given.items() if k.startswith("guidance.")]
    if options and cfg.guidance._target_.endswith(".NoGuidance"):
        raise ConfigError(f"{options[0]} is not used: guidance=none has no options; choose the guidance it belongs "
                          f"to, e.g. guidance=mg {options[0]}")


# the keys of the data configs (conf/data/*.yaml; a test keeps the two equal): read one by one, so a misspelt
# global_batch_size in an experiment file would train at the data config's batch
DATA_KEYS = ("name", "resolution", "fixed_resolution", "channels", "num_classes", "latent_downsample",
             "latent_channels", "latent_size", "root", "format", "on_error", "vae", "global_batch_size",
             "max_batch_per_device", "datamodule")


def check_data_keys(cfg: DictConfig) -> None:
    """A data key is one the code reads, or one named in any of the config's interpolations (a helper key of a
    user's dataset config: `${data.my_root}/train`, `${.my_root}`, `${oc.select:data.my_root,x}`, in lists too)."""
    import re

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
    try:
        validate_values(cfg)
        validate_model(cfg)
        validate_training(cfg)
        validate_repa(cfg)
        validate_sampler(cfg)
    except ValueError as err:
        raise ConfigError(f"invalid config: {err}") from None


def sweep_jobs(args: list[str]) -> list[list[str]] | None:
    """The override lists of a -m sweep's jobs (the grid of its comma lists and ranges); None where only Hydra's
    sweeper can expand it (an interval, a plugin's syntax)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
        choices = [[o.input_line] if not o.is_sweep_override() else
                   [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    except Exception:  # noqa: BLE001 -- Hydra reports what it cannot parse itself
        return None
    return [list(job) for job in itertools.product(*choices)]


def flatten(d, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (an empty dict is a leaf)."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def explain_composition(err: Exception, job: list[str], compose) -> str | None:
    """Hydra's composition errors as one line naming the key and the fix: a misspelt key (Hydra's own hint, `+key`,
    adds a key nothing reads) gets the nearest existing key, an unknown group option the list of options. None for
    anything else, which Hydra reports itself."""
    import difflib
    import re

    text = str(err)
    if found := re.search(r"Could not override '([^']+)'", text):
        key = found.group(1)
        rest = [o for o in job if override_key(o) != key]
        try:
            base = compose(rest)
        except Exception:  # noqa: BLE001 -- another override fails too: Hydra names that one
            return None
        head, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(base, head) if head else base
        if not isinstance(parent, DictConfig):  # the misspelling is higher up: compare whole paths
            near = difflib.get_close_matches(key, list(flatten(OmegaConf.to_container(base, resolve=False))), n=1,
                                             cutoff=0.75)
            return f"{key} is not a key of this config" + (f"; did you mean {near[0]}?" if near else "")
        keys = [str(k) for k in parent if not str(k).startswith("_")]
        if near := difflib.get_close_matches(leaf, keys, n=1, cutoff=0.7):
            return f"{key} is not a key of this config; did you mean {head + '.' if head else ''}{near[0]}?"
        return (f"{key} is not a key of this config; " + (f"{head} has {', '.join(keys)}" if keys else
                f"the {head} chosen has no options: choose one that has {leaf} ({head}=<option>)"))
    if found := re.search(r"Could not find '([^']+)/([^'/]+)'", text):
        group, name = found.groups()
        options = re.findall(r"^\t(\S+)$", text.split("Available options", 1)[-1].split("Config search path")[0], re.M)
        if options:
            return f"{group}={name} is not an option of {group}: {', '.join(options)}"
    return None


def check_launch(args: list[str], conf_dir: str) -> None:
    """Before Hydra starts: the command line composes (else one line naming the key or option, and a near one), and
    every job of a -m sweep also validates before the first one runs or is queued (a bad value in a later job
    stopped the sweep only when its turn came, after the earlier jobs or their SLURM queue waits)."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):  # --cfg job, --help, ...
        return
    multirun = bool({"-m", "--multirun"} & set(args))
    jobs = sweep_jobs(args) if multirun else [[a for a in args if not a.startswith("-")]]
    if not jobs:
        return
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        def composed(overrides):
            return compose(config_name="config", overrides=overrides)

        for job in jobs:
            where = f"sweep job `{' '.join(job)}`: " if len(jobs) > 1 else ""
            try:
                cfg = composed(job)
            except Exception as err:  # noqa: BLE001 -- explained where it can be, else Hydra reports it
                if (message := explain_composition(err, job, composed)) is not None:
                    raise ConfigError(where + message) from None
                return
            if len(jobs) > 1:  # a single run is validated by run.py as it starts, with Hydra's runtime values
                try:
                    validate(cfg)
                    validate_typed(cfg, job)
                except ConfigError as err:
                    raise ConfigError(f"{where}{err} (nothing of the sweep has run)") from None
