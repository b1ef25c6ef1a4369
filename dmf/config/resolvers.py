"""The resolvers the yaml files use (`${dmf.div:...}`, `${dmf.job_dir:...}`, ...), registered before Hydra composes."""
import hashlib

from omegaconf import OmegaConf

from dmf.core.launch_time import launch_time


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
