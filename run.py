"""Entry point: compose the config, validate it, dispatch on `mode`.

    python run.py                              # the embedded digits pipeline on a CPU
    python run.py experiment=dmf_xl_256        # DMF-XL/2 fine-tuning on ImageNet 256
    python run.py experiment=dmf_xl_256 --cfg job   # print the composed config
"""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dmf.command_line import command_line
from dmf.config import register_resolvers, validate, validate_choices, validate_typed
from dmf.core.errors import UsageError
from dmf.core.launch import start_job
from dmf.core.run_history import restore_launch_record

register_resolvers()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    start_job()
    try:
        hc = HydraConfig.get()
        validate_choices(cfg, hc.runtime.choices, list(hc.overrides.task))
        validate_typed(cfg, list(hc.overrides.task))
        validate(cfg)
        return hydra.utils.instantiate(cfg.mode)(cfg)
    except UsageError as err:
        if hc.output_subdir is not None:  # this process wrote .hydra (Lightning's rank > 0 relaunches do not)
            restore_launch_record(Path(hc.runtime.output_dir))
        stop(err)


def stop(err: UsageError):
    """The user's to fix: the message is the whole story, no traceback."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
    try:
        sys.argv[1:] = command_line(sys.argv[1:])
    except UsageError as err:
        stop(err)
    main()
