import pytest
import torch

from dmf.config import ConfigError
from dmf.train.entry import train
from dmf.train.strategy import check_jvp_attention, check_strategy
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


def test_a_kernel_without_forward_mode_ad_is_refused_for_the_jvp_objective_before_anything_is_built(tmp_path):
    """It would fail at the first step's JVP pass, after the data and the model are built."""
    cfg = compose_config(["experiment=digits_dmf", "attention=flash", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"attention.backend=flash has no forward-mode AD.*attention.backend=auto"):
        train(cfg)
    assert not any(tmp_path.iterdir())
    for ok in (["experiment=digits_dmf", "attention=math"], ["experiment=digits_dmf", "attention=fused_jvp"],
               ["experiment=digits_dmf", "objective.jvp=split"], ["experiment=digits_flow", "attention=sdpa"]):
        check_jvp_attention(compose_config(ok))


def test_a_kernel_this_machine_cannot_run_is_refused_before_anything_is_built(tmp_path):
    """attention=fused_jvp (Triton, CUDA) on a CPU failed with a traceback inside the first step; flash in mode=eval
    after the network, the reference statistics and the first batches."""
    if torch.cuda.is_available():
        pytest.skip("the CUDA kernels can run here")
    cfg = compose_config(["experiment=digits_dmf", "attention=fused_jvp", "trainer.accelerator=cpu", f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"attention.backend=fused_jvp cannot run on cpu here.*Fix: attention.backend=auto"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
    from dmf.models.attention import check_available

    with pytest.raises(ConfigError, match=r"attention.backend=flash cannot run on cpu"):
        check_available("flash", torch.device("cpu"))
    for name in ("auto", "math", "sdpa"):
        check_available(name, torch.device("cpu"))


def test_a_strategy_lightning_does_not_know_is_one_line():
    with pytest.raises(ConfigError, match="trainer.strategy=bogus is not a strategy Lightning knows: auto, ddp, dmf_fsdp"):
        check_strategy(compose_config(["experiment=digits_dmf", "trainer.strategy=bogus"]))
    for ok in ("auto", "ddp", "dmf_fsdp", "ddp_spawn"):
        check_strategy(compose_config(["experiment=digits_flow", f"trainer.strategy={ok}"]))
