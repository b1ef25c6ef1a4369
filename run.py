"""Entry point: compose the config, validate it, dispatch on `mode`.

    python run.py                              # the embedded digits pipeline on a CPU
    python run.py experiment=dmf_xl_256        # DMF-XL/2 fine-tuning on ImageNet 256
    python run.py experiment=dmf_xl_256 --cfg job   # print the composed config
"""
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from dmf.command_line import command_line, new_folder
from dmf.config import check_launch, register_resolvers, validate, validate_choices, validate_typed
from dmf.core.errors import UsageError
from dmf.core.launch import leads_launch, start_job
from dmf.core.run_history import remove_refused_launch, restore_launch_record

register_resolvers()
# whether this launch's folder is new (none typed: Hydra's dated one; else one that does not exist yet): a launch
# refused there leaves no folder behind. Set in __main__, before Hydra creates it.
FRESH_FOLDER = False


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    start_job()
    hc = HydraConfig.get()
    refused = False
    try:
        validate_choices(cfg, hc.runtime.choices, list(hc.overrides.task))
        validate_typed(cfg, list(hc.overrides.task))
        validate(cfg)
        return hydra.utils.instantiate(cfg.mode)(cfg)
    except UsageError as err:
        refused = True
        stop(err)
    except InstantiationException as err:  # a piece built by Hydra (feature network, data source) named the problem
        if not isinstance(err.__cause__, UsageError):
            raise
        refused = True
        stop(err.__cause__)
    finally:
        # a run dir's .hydra/ is its last training attempt's record: a refused or failed launch, an eval or an export
        # into it leaves it as it was (this process wrote .hydra; Lightning's rank > 0 relaunches do not, and of a
        # SLURM job's tasks, which all run the pickled job, only the first puts it back)
        if hc.output_subdir is not None and leads_launch():
            restore_launch_record(Path(hc.runtime.output_dir))
            if refused and FRESH_FOLDER:
                remove_refused_launch(Path(hc.runtime.output_dir))


def stop(err: UsageError):
    """The user's to fix: the message is the whole story, no traceback."""
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
    try:
        sys.argv[1:] = command_line(sys.argv[1:])
        FRESH_FOLDER = new_folder(sys.argv[1:])
        check_launch(sys.argv[1:], str(Path(__file__).resolve().parent / "conf"))
    except UsageError as err:
        stop(err)
    main()
