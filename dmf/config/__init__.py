"""The composed config's rules: its resolvers, the early validation pass (one clear error before any expensive
work), the checks of what the command line typed, and the launch check that runs before Hydra starts."""
from dmf.config.launch import check_launch, explain_composition, sweep_jobs
from dmf.config.resolvers import job_dir_name, launcher_value, register_resolvers
from dmf.config.typed import MODEL_GROUPS, override_key, validate_choices, validate_typed, without_repeats
from dmf.config.values import DATA_KEYS, validate
from dmf.core.errors import ConfigError

__all__ = ["ConfigError", "DATA_KEYS", "MODEL_GROUPS", "check_launch", "explain_composition", "job_dir_name",
           "launcher_value", "override_key", "register_resolvers", "sweep_jobs", "validate", "validate_choices",
           "validate_typed", "without_repeats"]
