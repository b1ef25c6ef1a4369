"""Entry point: compose the config, validate it, dispatch on `mode`.

    python run.py                              # the embedded digits pipeline on a CPU
    python run.py experiment=dmf_xl_256        # DMF-XL/2 fine-tuning on ImageNet 256
    python run.py experiment=dmf_xl_256 --cfg job   # print the composed config
"""
import hydra
from omegaconf import DictConfig

from dmf.config import register_resolvers, validate

register_resolvers()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig):
    validate(cfg)
    return hydra.utils.instantiate(cfg.mode)(cfg)


if __name__ == "__main__":
    main()
