"""The training callbacks inside a Lightning fast_dev_run: sample grids from the EMA net as PNG, FID logged as
fid/<sampler>_<steps>; the conf/callbacks/with_eval.yaml preset builds them."""
import copy

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from dmf.train.callbacks import FIDCallback, SampleGrid
from tests.eval.eval_helpers import TINY_MODEL, compose, tiny_net

SAMPLER = {"_target_": "dmf.sampling.FlowMapEuler", "steps": 1}
VAE = {"_target_": "dmf.data.vae.IdentityVAE"}
METRICS = {"fd_pix": {"_target_": "dmf.eval.scoring.metrics.Frechet", "extractor": "pixels", "feature": "pix"}}
EXTRACTORS = {"pixels": {"_target_": "tests.eval.eval_helpers.PixelFeatures"}}


class TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = tiny_net().train()
        self.ema_net = copy.deepcopy(self.net).eval().requires_grad_(False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        t = torch.rand(len(x))
        return ((self.net(x, t, t, y) - x) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=1e-3)


def loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.arange(8) % 10), batch_size=4)


def test_callbacks_in_fast_dev_run(tmp_path):
    grid = SampleGrid(SAMPLER, VAE, steps=[1, 2], num_images=20, every_n_steps=1, dirpath=str(tmp_path / "samples"))
    fid = FIDCallback(SAMPLER, VAE, METRICS, EXTRACTORS, steps=1, every_n_steps=1, num_samples=24, batch_size=8,
                      chunk_size=8, metrics=["fd_pix"], ref_stats="build",
                      ref_source={"_target_": "dmf.digits.data.reference"})
    module = TinyModule()
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", callbacks=[grid, fid], enable_progress_bar=False,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, loader())
    names = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert names == ["step0000001_euler_1.png", "step0000001_euler_2.png"]
    value = trainer.callback_metrics["fd_pix/euler_1"].item()
    assert value > 0 and fid.history[0][1]["fd_pix/euler_1"] == pytest.approx(value)
    assert module.ema_net.training is False and module.net.training is True  # modes restored

    # the same evaluation again gives the same number: fixed noise, labels and reference
    again = fid.evaluate(trainer, module, log=False)["fd_pix/euler_1"]
    assert again == pytest.approx(fid.history[0][1]["fd_pix/euler_1"], rel=1e-9)


def test_bad_reference_fails_at_setup(tmp_path):
    fid = FIDCallback(SAMPLER, VAE, METRICS, EXTRACTORS, metrics=["fd_pix"], ref_stats=None)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", callbacks=[fid], enable_progress_bar=False,
                        default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="mode=ref_stats"):
        trainer.fit(TinyModule(), loader())


def test_with_eval_preset_builds_the_callbacks(tmp_path):
    cfg = compose(["callbacks=with_eval", f"run_dir={tmp_path}", *TINY_MODEL, "eval=digits"])
    callbacks = {k: instantiate(v) for k, v in cfg.callbacks.items()}
    assert isinstance(callbacks["sample_grid"], SampleGrid) and isinstance(callbacks["fid"], FIDCallback)
    assert {"checkpoint", "progress"} <= set(callbacks)
    # the training-time check scores what the experiment's eval group scores, on its monitor sample count
    assert callbacks["fid"].metrics == ["fd_digits", "class_acc"] and callbacks["fid"].num_samples == 1797
    assert callbacks["sample_grid"].steps == [1, 2, 4]
    # ... with mode=eval's protocol: eval=digits scores balanced labels
    fid = callbacks["fid"]
    assert (fid.labels, fid.quantize, fid.decode_precision) == ("balanced", "floor", "fp32")
    cfg = compose(["callbacks=with_eval", f"run_dir={tmp_path}", *TINY_MODEL, "eval=digits", "eval.quantize=round",
                   "eval.decode_precision=bf16"])
    assert (instantiate(cfg.callbacks.fid).quantize, instantiate(cfg.callbacks.fid).decode_precision) == ("round", "bf16")
    # its network precision takes eval.precision's names (fp32 was a KeyError), and refuses a switch it has not
    assert instantiate(cfg.callbacks.fid, autocast="fp32").autocast is None
    assert instantiate(cfg.callbacks.fid, autocast="bf16").autocast is torch.bfloat16
    with pytest.raises(Exception, match=r"callbacks.fid.autocast='tf32' must be null \(fp32\), fp32, bf16 or fp16"):
        instantiate(cfg.callbacks.fid, autocast="tf32")


def test_sample_grid_sends_images_to_wandb(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="test")  # no run starts until used
    calls = []
    monkeypatch.setattr(logger, "log_image",
                        lambda key, images, step=None, **kw: calls.append((key, images[0].shape, step)))
    trainer = SimpleNamespace(loggers=[logger], global_step=3)
    SampleGrid._log_wandb(trainer, "samples/euler_1", np.zeros((10, 10, 3), np.uint8))
    assert calls == [("samples/euler_1", (10, 10, 3), 3)]
