import csv
from pathlib import Path

import pytest
import torch

from dmf.train.ema import ema_decay, make_ema, update_ema
from dmf.train.entry import train
from tests.helpers import compose_config, tiny_dmft

TINY = ["debug=tiny"]  # conf/debug/tiny.yaml: a tiny network, batch 16, no progress bar


def run_train(tmp_path: Path, experiment: str, extra: list[str]):
    cfg = compose_config([f"experiment={experiment}", f"run_dir={tmp_path}", *TINY, *extra])
    return train(cfg)


def test_flow_matching_fast_dev_run(tmp_path):
    module = run_train(tmp_path, "digits_flow", ["trainer.fast_dev_run=true"])
    assert module.trainer.global_step == 1
    assert type(module.net).__name__ == "SiT"


def test_dmf_fast_dev_run_with_model_guidance(tmp_path):
    module = run_train(tmp_path, "digits_dmf", ["trainer.fast_dev_run=true", "model.dmf_depth=1", "guidance.omega=0.6"])
    assert module.trainer.global_step == 1
    assert type(module.net).__name__ == "DMFT"


def test_resume_continues_the_step_count_and_logs_per_term_losses(tmp_path):
    extra = ["model.dmf_depth=1", "trainer.log_every_n_steps=1"]
    run_train(tmp_path, "digits_dmf", [*extra, "trainer.max_steps=3"])
    last = tmp_path / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=False)
    assert first["global_step"] == 3
    module = run_train(tmp_path, "digits_dmf", [*extra, "trainer.max_steps=5"])  # resume=auto finds last.ckpt
    assert module.trainer.global_step == 5
    rows = list(csv.DictReader(open(tmp_path / "logs" / "version_0" / "metrics.csv")))
    assert {"train/loss_fm", "train/loss_mf", "train/mse_fm", "train/mse_mf"} <= set(rows[0])
    # the first run's rows survive the resume, which continues the same file at step 3
    assert [int(r["step"]) for r in rows if r.get("train/loss_mf")] == [0, 1, 2, 3, 4]
    ckpt = torch.load(last, weights_only=False)["state_dict"]
    # EMA weights are saved beside the online ones and differ from them after training
    assert not torch.equal(ckpt["ema_net.final_layer.linear.weight"], ckpt["net.final_layer.linear.weight"])


def test_dmf_starts_from_a_flow_checkpoint(tmp_path):
    run_train(tmp_path / "flow", "digits_flow", ["trainer.max_steps=2", "trainer.log_every_n_steps=50"])
    ckpt = tmp_path / "flow" / "checkpoints" / "last.ckpt"
    rows = list(csv.DictReader(open(tmp_path / "flow" / "logs" / "version_0" / "metrics.csv")))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [1]  # shorter than the interval: logs its end
    module = run_train(tmp_path / "dmf", "digits_dmf", ["model.dmf_depth=1", "trainer.fast_dev_run=true", f"ckpt={ckpt}"])
    flow_ema = torch.load(ckpt, weights_only=False)["state_dict"]["ema_net.blocks.0.attn.qkv.weight"]
    # one optimizer step later the weights are close to, but not exactly, the flow model's EMA weights
    assert torch.allclose(module.net.blocks[0].attn.qkv.weight, flow_ema, atol=1e-2)


def test_ema_moves_once_per_optimizer_step(tmp_path):
    """Accumulating 2 micro-batches of 8 is the same optimizer step as one batch of 16 (same data, same draws),
    so the EMA must come out the same: it is updated per optimizer step, not per micro-batch."""
    extra = ["model.dmf_depth=1", "data.global_batch_size=16", "trainer.max_steps=3", "ema.decay=0.5",
             "ema.warmup=false"]
    one = run_train(tmp_path / "one", "digits_dmf", extra)
    two = run_train(tmp_path / "two", "digits_dmf", [*extra, "trainer.accumulate_grad_batches=2"])
    assert one.trainer.accumulate_grad_batches == 1 and two.trainer.accumulate_grad_batches == 2
    assert two.trainer.global_step == 3
    hparams = (tmp_path / "two" / "logs" / "version_0" / "hparams.yaml").read_text()
    assert "batch/global: 16" in hparams and "batch/per_device: 8" in hparams and "batch/accumulate: 2" in hparams
    for (name, a), b in zip(one.ema_net.state_dict().items(), two.ema_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    # and the EMA did move: it is not the initial weights nor the online weights
    assert not torch.allclose(one.ema_net.final_layer.linear.weight, one.net.final_layer.linear.weight)


def test_ema_warmup_and_update():
    assert ema_decay(0, 0.999, warmup=True) == pytest.approx(0.1)
    assert ema_decay(10_000, 0.999, warmup=True) == 0.999
    assert ema_decay(0, 0.9999, warmup=False) == 0.9999
    net = tiny_dmft()
    ema = make_ema(net)
    torch.nn.init.constant_(net.final_layer.linear.bias, 1.0)
    update_ema(ema, net, decay=0.75)
    assert torch.allclose(ema.final_layer.linear.bias, torch.full_like(ema.final_layer.linear.bias, 0.25))
    assert not any(p.requires_grad for p in ema.parameters())


def test_wandb_logger_is_selectable_and_offline_without_a_key(tmp_path, monkeypatch):
    from hydra.utils import instantiate

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    cfg = compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", "logger=wandb", "logger.name=test"])
    logger = instantiate(cfg.logger)
    assert type(logger).__name__ == "WandbLogger" and logger._offline
    assert logger.save_dir == str(tmp_path)
