"""Checks of what the command line typed (Hydra's overrides and group choices): a key this launch would not read, or
would read otherwise than meant, is said, not dropped."""
import re
import weakref

from omegaconf import DictConfig, OmegaConf

from dmf.config.kinds import guidance_kind, objective_kind
from dmf.config.trained import SAME_AS, UNSET, checkpoint_record, recorded, trained_differences
from dmf.config.values import WORDS_TOO
from dmf.core.errors import ConfigError
from dmf.core.options import under
from dmf.models.registry import parse_name


# the model group that builds each family (conf/model/<group>.yaml)
MODEL_GROUPS = {"DMFT": "dmft", "MF": "mf", "SiT": "sit"}

# What each mode reads (from its code: dmf/eval/entry.py, dmf/train/export.py); the interpolations inside these keys
# add the keys they name (model.input_size: ${data.latent_size}, sampler.path: ${time.path}, eval.ref_out: ...).
GENERATION_READS = ("ckpt", "seed", "run_dir", "model", "data.latent_channels", "data.latent_size", "data.num_classes",
                    "data.vae", "sampler", "eval")
READS = {"evaluate": GENERATION_READS, "sample": GENERATION_READS,
         "export": ("ckpt", "model"),  # and the checkpoint's recorded config, written beside the weights
         "ref_stats": ("seed", "run_dir", "data.vae", "eval.ref_out", "eval.overwrite", "eval.ref_source",
                       "eval.ref_space", "eval.metrics", "eval.metric_defs", "eval.extractors", "eval.batch_size",
                       "eval.num_workers", "eval.quantize", "eval.device")}
WITH_CHECKPOINT = ("evaluate", "sample", "export")
MODE_NAMES = {"evaluate": "eval"}
# choices of other keys' values (a group of @package _global_ files, the mode), where the launch writes (run_dir,
# Hydra's own): never refused here
LAUNCH = ("experiment", "debug", "mode", "hydra", "paper", "run_dir")
# what only training reads: in a mode that uses trained weights, typing one would not change them
TRAINING = ("guidance", "optim", "ema", "objective", "time", "trainer", "callbacks", "logger", "resume", "required")
# what mode=train reads only through its callbacks (callbacks=with_eval interpolates ${sampler}, ${eval.metrics}, ...)
EVALUATION = ("eval", "sampler")
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")  # ${a.b}, also inside a resolver's arguments


def validate_choices(cfg: DictConfig, choices, typed: list[str]) -> None:
    """Checks of the config groups this launch chose (Hydra's runtime choices; `typed`: the command line's
    overrides): a group that a value set after it (an experiment's model.name) would silently contradict. run.py
    calls it once, at the top: configs composed inside a job (pipeline stages, paper rows) have their own choices."""
    model = choices.get("model") if any(override_key(o) == "model" for o in typed) else None
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


def without_repeats(overrides: list[str]) -> list[str]:
    """A command to print: each key once, where its last value stands (Hydra's last wins, so the run is the same)."""
    last = {override.split("=", 1)[0]: i for i, override in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[o.split("=", 1)[0]] == i]


_BASES = weakref.WeakKeyDictionary()  # Hydra instance -> {typed groups: the config they compose to} (read only)


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
    # a recipe checks each stage override alone (dmf/pipelines/recipe.py `reads`): mostly the same base, and a compose
    # costs about half a second; cached per Hydra instance (each holds its own config folder)
    cache = _BASES.setdefault(GlobalHydra.instance().hydra, {})
    if (base := cache.get(tuple(choices))) is None:
        base = cache[tuple(choices)] = compose(config_name="config", overrides=choices)
    for key in values:
        if isinstance(value(base, key), bool):
            raise ConfigError(f"{given[key]}: {key} is true or false (Hydra keeps any other word as text, which "
                              f"counts as true)")


def validate_typed(cfg: DictConfig, typed: list[str]) -> None:
    """Keys typed on the command line that this launch would not read (READS: what each mode reads), or would read
    otherwise than meant (a value the checkpoint's weights were trained otherwise with): said, not dropped. run.py
    calls it once (check_launch once per job of a sweep); recipes (mode=pipeline, paper rows) refuse the keys they
    set per stage themselves."""
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
    if pair and objective_kind(cfg) == "fm" and mode not in READS:
        raise ConfigError(f"{pair[0]} is not used: objective=fm (a flow model) draws one time from time.P_mean and "
                          f"time.P_std; the (t, r) proposal keys shape objective=dmf")
    options = [o for k, o in given.items() if k.startswith("guidance.")]
    if options and guidance_kind(cfg) == "none" and mode not in READS:
        raise ConfigError(f"{options[0]} is not used: guidance=none has no options; choose the guidance it belongs "
                          f"to, e.g. guidance=mg {options[0]}")
    check_mode_reads(cfg, given, mode)


def read_keys(cfg: DictConfig, roots) -> set[str]:
    """`roots` and every key their values interpolate, followed through (unresolved: interpolations are kept)."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    read, todo = set(), list(roots)
    while todo:
        key = todo.pop()
        if key not in read:
            read.add(key)
            todo += REFERENCE.findall(str(recorded(tree, key)))
    return read


def is_read(key: str, read: set[str]) -> bool:
    """Whether a typed key (or group) is read: it lies at or under a read key, or holds one (`eval=digits`)."""
    return under(key, read) or any(r.startswith(key + ".") for r in read)


def check_mode_reads(cfg: DictConfig, given: dict[str, str], mode: str) -> None:
    """Keys typed on the command line that this mode does not read, and (with a checkpoint) keys it reads that the
    checkpoint's weights were trained with otherwise."""
    setting = {k.replace("/", "."): o for k, o in given.items() if not o.startswith("~")}
    name = MODE_NAMES.get(mode, mode)
    if mode == "train":
        read = read_keys(cfg, [k for k in cfg if k not in EVALUATION])
        for key, o in setting.items():
            if under(key, EVALUATION) and not is_read(key, read):
                raise ConfigError(f"{o} is not used by mode=train: no configured callback samples or scores "
                                  f"(callbacks=with_eval does, reading sampler and eval's protocol keys); to score "
                                  f"the checkpoint: python run.py mode=eval ckpt=<run_dir>/checkpoints/last.ckpt {o}")
        return
    if mode not in READS:
        return
    read = read_keys(cfg, READS[mode])
    unread = [(k, o) for k, o in setting.items() if not under(k, LAUNCH) and not is_read(k, read)]
    record = checkpoint_record(cfg) if mode in WITH_CHECKPOINT and (unread or any(
        under(k, ("model", "data", "time", "sampler")) for k in setting)) else None
    for key, o in unread:
        if mode in WITH_CHECKPOINT and under(key, TRAINING):
            was = recorded(record, key)
            shown = was is not UNSET and key != "resume" and len(str(was)) <= 160  # a whole group only when short
            trained = f"; the checkpoint was trained with {key}={was}" if shown else ""
            raise ConfigError(f"{o}: {key} is a training setting, which mode={name} does not read (it "
                              f"{'exports' if mode == 'export' else 'samples'} the trained weights as they are)"
                              f"{trained}; to change it, train or fine-tune: python run.py mode=train "
                              f"ckpt={cfg.ckpt or '<ckpt>'} {o}")
        raise ConfigError(f"{o} is not read by mode={name}" + (
            ": it computes statistics of the real images of eval.ref_source (keys it reads: "
            f"{', '.join(READS[mode])})" if mode == "ref_stats" else
            f" (it reads {', '.join(READS[mode])}, and the values they interpolate)"))
    # single keys first: time.path=cosine, not the sampler=restart whose sampler.path interpolates it, is named
    for key, o in sorted(setting.items(), key=lambda item: "." not in item[0]):
        for leaf, value, was in trained_differences(cfg, key, record) if record else []:
            if leaf != key and leaf in SAME_AS:
                continue  # a copy of another key (sampler.path: ${time.path}) inside a group typed as a whole
            raise ConfigError(f"{o}: the checkpoint was trained with {SAME_AS.get(leaf, leaf)}={was}, and its "
                              f"weights are only that ({leaf}={value} here); leave {key} out, or train or fine-tune "
                              f"with it: python run.py mode=train ckpt={cfg.ckpt} {o}")
