"""Entry point: compose the config, validate it, dispatch on `mode`.

    python run.py                              # the embedded digits pipeline on a CPU
    python run.py experiment=dmf_xl_256        # DMF-XL/2 fine-tuning on ImageNet 256
    python run.py experiment=dmf_xl_256 --cfg job   # print the composed config
"""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dmf.config import register_resolvers, validate
from dmf.core.errors import UsageError

register_resolvers()
os.environ.setdefault("DMF_ROOT", str(Path(__file__).resolve().parent))  # finds launchers/ from any cwd


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    try:
        validate(cfg)
        return hydra.utils.instantiate(cfg.mode)(cfg)
    except UsageError as err:  # the user's to fix: the message is the whole story
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
