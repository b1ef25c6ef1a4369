"""Before Hydra starts (run.py): the command line composes, and every job of a -m sweep validates, or one line names
the key, the option or the job."""
import difflib
import importlib
import itertools
import re
import shutil
import subprocess

from omegaconf import DictConfig, OmegaConf

from dmf.config.resolvers import register_resolvers
from dmf.config.typed import override_key, validate_typed
from dmf.config.values import validate
from dmf.core.errors import ConfigError, UsageError
from dmf.core.options import flatten, under

# a sweep job's run dir before Hydra names it (`${hydra:runtime.output_dir}` resolves only inside the job): the mode
# checks at launch compose and check paths under it, and nothing is written there
LAUNCH_RUN_DIR = ".dmf-launch-check/job"


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


def explain_composition(err: Exception, job: list[str], compose) -> str | None:
    """Hydra's composition errors as one line naming the key and the fix: a misspelt key (Hydra's own hint, `+key`,
    adds a key nothing reads) gets the nearest existing key, an unknown group option the list of options. None for
    anything else, which Hydra reports itself."""
    text = str(err)
    if found := re.search(r"Could not override '([^']+)'", text):
        key = found.group(1)
        rest = [o for o in job if override_key(o) != key]
        try:
            base = compose(rest)
        except Exception:  # noqa: BLE001 -- another override fails too: Hydra names that one
            return None
        if (message := stage_key(base, key, next(o for o in job if override_key(o) == key), compose)) is not None:
            return message
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


def stage_key(base: DictConfig, key: str, override: str, compose) -> str | None:
    """A key that a pipeline's stage or a paper table's row has, typed for the launching config, which lacks it (e.g.
    `objective.repa_weight` of the REPA flow stage under the default pipeline): where it goes instead."""
    def owners(configs: dict) -> list[str]:
        found = []
        for name, overrides in configs.items():
            try:
                cfg = compose(list(overrides))
            except Exception:  # noqa: BLE001 -- a stage that does not compose alone says nothing here
                continue
            # unresolved: a stage's ${hydra:...} values resolve only inside its job
            if any(under(k, (key,)) for k in flatten(OmegaConf.to_container(cfg, resolve=False))):
                found.append(name)
        return found
    if stages := OmegaConf.select(base, "pipeline.stages"):
        if names := owners({n: [f"experiment={s.experiment}"] for n, s in stages.items()}):
            return (f"{key} is a key of stage {' and '.join(names)}, not of the pipeline's own config: give it to "
                    f"the stage with 'pipeline.stages.{names[0]}.overrides=[\"{override.lstrip('+')}\"]'")
    if (rows := OmegaConf.select(base, "paper.rows")) and (table := OmegaConf.select(base, "paper.name")):
        common = list(OmegaConf.select(base, "paper.common") or [])
        if names := owners({n: [*common, *r.get("overrides", [])] for n, r in rows.items()}):
            return (f"{key} is a key of rows {', '.join(names)} of paper={table}, not of the config the table "
                    f"launches from: a row's values are its overrides in conf/paper/{table}.yaml (a copy of that file "
                    f"under another name makes a table of your own), or run a row's experiment alone with mode=train")
    return None


def check_launch(args: list[str], conf_dir: str) -> None:
    """Before Hydra starts: the command line composes (else one line naming the key or option, and a near one), and
    every job of a -m sweep also validates before the first one runs or is queued (a bad value in a later job
    stopped the sweep only when its turn came, after the earlier jobs or their SLURM queue waits), then passes its mode's
    checks (eval values, pipeline stages, paper rows, devices: mode_check)."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):  # --cfg job, --help, ...
        return
    multirun = bool({"-m", "--multirun"} & set(args))
    launcher = [a for a in args if override_key(a) == "hydra/launcher"]
    if launcher and not multirun:  # Hydra uses a launcher only for -m: the job would run on this machine
        raise ConfigError(f"{launcher[0]} submits -m sweeps only; without -m this job would run here: add -m "
                          "(one job is a sweep of one)")
    jobs = sweep_jobs(args) if multirun else [[a for a in args if not a.startswith("-")]]
    if not jobs:
        return
    from hydra import compose, initialize_config_dir

    register_resolvers()  # the configs' own interpolations (dmf.launcher, ...), whoever calls this
    sweep = []
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
                OmegaConf.update(cfg, "run_dir", LAUNCH_RUN_DIR)
                sweep.append((job, cfg))
        for job, cfg in sweep:  # then each job's mode checks: a later job's mode-level error stops the sweep too
            try:
                if (check := mode_check(cfg)) is not None:
                    check(cfg, job, sweep)
            except UsageError as err:
                raise ConfigError(f"sweep job `{' '.join(job)}`: {err} (nothing of the sweep has run)") from None
            except Exception:  # noqa: BLE001 -- not the user's to fix here: the job reports it as it runs
                continue
        if multirun and launcher:  # a preset of ours or the user's: what it launches with decides
            hydra_cfg = compose(config_name="config", overrides=jobs[0], return_hydra_config=True)
            if "slurm" in str(OmegaConf.select(hydra_cfg, "hydra.launcher._target_", default="")).lower():
                check_slurm_reachable()


def check_slurm_reachable() -> None:
    """A SLURM launcher submits with sbatch: without a SLURM client, or one that reaches no cluster, submitit stopped
    with a long traceback after the sweep's checks. `sinfo` asks the controller what sbatch would."""
    fix = "launch from a SLURM login node, or drop hydra/launcher to run the sweep's jobs on this machine"
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        raise ConfigError(f"hydra/launcher: this machine has no SLURM client (sbatch, sinfo): {fix}")
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return  # a slow controller: sbatch waits for it too
    if out.returncode != 0:
        said = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise ConfigError(f"hydra/launcher: SLURM cannot be reached from here (sinfo: {said}): {fix}")


def mode_check(cfg: DictConfig):
    """The cheap checks of a job's mode, without side effects: `check_<mode function>` beside the function (e.g.
    dmf.eval.entry.check_evaluate for mode=eval), called as check(cfg, job, sweep) with the job's overrides and the
    sweep's (overrides, config) pairs; None where the mode has none."""
    module, name = cfg.mode._target_.rsplit(".", 1)
    return getattr(importlib.import_module(module), f"check_{name}", None)


def runs_here(job: list[str]) -> bool:
    """A sweep's jobs run on this machine (Hydra's local launcher), not on a cluster's nodes (hydra/launcher=<preset>):
    only then do this machine's devices say anything about them."""
    return not any(override_key(o) == "hydra/launcher" for o in job)
