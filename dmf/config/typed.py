"""Checks of what the command line typed (Hydra's overrides and group choices): a key this launch would not read, or
would read otherwise than meant, is said, not dropped."""
from omegaconf import DictConfig, OmegaConf

from dmf.config.kinds import guidance_kind, objective_kind
from dmf.config.values import WORDS_TOO
from dmf.core.errors import ConfigError
from dmf.models.registry import parse_name


# the model group that builds each family (conf/model/<group>.yaml)
MODEL_GROUPS = {"DMFT": "dmft", "MF": "mf", "SiT": "sit"}


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
    if pair and objective_kind(cfg) == "fm":
        raise ConfigError(f"{pair[0]} is not used: objective=fm (a flow model) draws one time from time.P_mean and "
                          f"time.P_std; the (t, r) proposal keys shape objective=dmf")
    options = [o for k, o in given.items() if k.startswith("guidance.")]
    if options and guidance_kind(cfg) == "none":
        raise ConfigError(f"{options[0]} is not used: guidance=none has no options; choose the guidance it belongs "
                          f"to, e.g. guidance=mg {options[0]}")
