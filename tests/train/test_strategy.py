import pytest

from dmf.config import ConfigError
from dmf.train.entry import train
from dmf.train.strategy import check_strategy
from tests.helpers import compose_config


def test_lightnings_fsdp_is_refused_for_the_jvp_objective_before_anything_is_built(tmp_path):
    cfg = compose_config(["experiment=digits_dmf", "trainer.strategy=fsdp", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"trainer.strategy=fsdp .*jvp.*INTERNAL ASSERT.*Use trainer=fsdp"):
        train(cfg)
    assert not any(tmp_path.iterdir())


def test_trainer_fsdp_is_open_to_both_objectives_and_lightnings_fsdp_to_flow_matching():
    check_strategy(compose_config(["experiment=digits_dmf", "trainer=fsdp"]))
    check_strategy(compose_config(["experiment=digits_flow", "trainer=fsdp"]))
    check_strategy(compose_config(["experiment=digits_flow", "trainer.strategy=fsdp"]))
    check_strategy(compose_config(["experiment=digits_dmf", "trainer.strategy=ddp"]))
