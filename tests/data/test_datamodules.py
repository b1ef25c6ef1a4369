"""DataModules as the trainer sees them (batches, DDP splits via a stand-in trainer) and the data configs."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from dmf.config import register_resolvers
from dmf.data.datamodules import LatentFolderDataModule, ShardDataModule, SyntheticDataModule

CONF = Path(__file__).parents[2] / "conf"
COMMON = dict(latent_channels=4, latent_size=8, num_classes=3, seed=1, num_workers=0)


def trainer(rank, world=2, epoch=0):
    return SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch)


def test_folder_batches_and_ddp_split(preprocessed):
    dm = LatentFolderDataModule(root=str(preprocessed), batch_size=2, **COMMON)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 4, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    seen = []
    for rank in (0, 1):
        dm.trainer = trainer(rank)
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.seed == 1  # Lightning keeps it
        loader.sampler.set_epoch(0)
        seen.append(list(loader.sampler))
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == 4  # 9 // 2, drop_last
    # a run resumed after 2 samples per rank (4 of the epoch's order) continues each rank's own stream
    loader.sampler.skip_once(4)
    assert list(loader.sampler) == seen[1][2:]


def test_shard_loaders_have_equal_length_on_every_rank(preprocessed):
    lengths = []
    for rank in (0, 1):
        dm = ShardDataModule(root=str(preprocessed), batch_size=2, **COMMON)
        dm.trainer = trainer(rank)
        loader = dm.train_dataloader()
        batches = list(loader)
        assert all(x.shape == (2, 4, 8, 8) and y.dtype == torch.int64 for x, y in batches)
        lengths.append((len(loader), len(batches)))
    assert lengths[0] == lengths[1] == (3, 3)  # ceil(9 / 2) = 5 -> 6 per rank: 3 batches of 2


def test_shard_module_checks_the_manifest_against_the_config(preprocessed):
    dm = ShardDataModule(root=str(preprocessed), batch_size=2, **{**COMMON, "latent_size": 16})
    with pytest.raises(ValueError, match=r"shards hold moments of shape \(8, 8, 8\) but the data config expects"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="exactly one of root"):
        ShardDataModule(batch_size=2)
    with pytest.raises(ValueError, match="set data.datamodule.num_samples"):
        ShardDataModule(urls=str(preprocessed / "wds" / "latents-{000000..000002}.tar"), batch_size=2).setup()


def test_synthetic_items_keep_their_moments_and_resample_noise():
    dm = SyntheticDataModule(num_samples=16, batch_size=4, latent_channels=4, latent_size=4, num_classes=5,
                             num_workers=0)
    dm.setup()
    ds = dm.dataset
    torch.testing.assert_close(ds.moments(3), ds.moments(3))
    (x1, y1), (x2, _) = ds[3], ds[3]
    assert x1.shape == (4, 4, 4) and y1 == 3 and not torch.equal(x1, x2)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 4, 4, 4) and 0.5 < x.std().item() < 2.0


@pytest.mark.parametrize("name", ["imagenet256_latents", "imagenet512_latents", "imagenet256_wds",
                                  "imagenet512_wds", "synthetic"])
def test_data_configs_resolve_and_build(name, preprocessed):
    register_resolvers()
    cfg = OmegaConf.create({"seed": 0, "data": OmegaConf.load(CONF / "data" / f"{name}.yaml")})
    assert cfg.data.latent_size * cfg.data.latent_downsample == cfg.data.resolution
    cfg.data.resolution = 64  # the fixture's latents: 64 / 8 = 8
    if name != "synthetic":
        assert cfg.data.vae.path == "stabilityai/sd-vae-ft-mse" and cfg.data.vae.scale == 0.18215
        assert cfg.data.datamodule.scale == 0.18215 and cfg.data.format in ("npy", "wds")
        cfg.data.root, cfg.data.num_classes = str(preprocessed), 3
    cfg.data.datamodule.num_workers, cfg.data.datamodule.batch_size = 0, 2
    dm = instantiate(cfg.data.datamodule)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, cfg.data.latent_channels, 8, 8) and y.dtype == torch.int64


def test_preprocess_mode_and_group_configs():
    mode = OmegaConf.load(CONF / "mode" / "preprocess.yaml")
    assert mode._target_ == "dmf.data.preprocess.main" and mode._partial_ is True
    group = OmegaConf.load(CONF / "preprocess" / "default.yaml")
    cfg = OmegaConf.create({"data": {"root": "/r", "format": "both", "on_error": "skip"}, "preprocess": group})
    assert (cfg.preprocess.out, cfg.preprocess.layout, cfg.preprocess.on_error) == ("/r", "both", "skip")
    assert cfg.preprocess.folder_size == 1000 and cfg.preprocess.input is None


class Recorder(__import__("lightning").LightningModule):
    """Consumes batches like the training module would and records what it saw per epoch."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = {}

    def training_step(self, batch, _):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).append((x.shape, y.tolist(), x.sum().item()))
        return (self.w * x.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_lightning_trainer_runs_epochs_with_fresh_noise(kind, preprocessed):
    import lightning as pl

    cls = LatentFolderDataModule if kind == "folder" else ShardDataModule
    dm = cls(root=str(preprocessed), batch_size=2, **COMMON)
    module = Recorder()
    pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule=dm)
    e0, e1 = module.seen[0], module.seen[1]
    assert len(e0) == len(e1) == (4 if kind == "folder" else 5)  # 9 // 2, or ceil(9 / 2) = 5 batches
    assert all(shape == (2, 4, 8, 8) for shape, _, _ in e0 + e1)
    assert [s for *_, s in e0] != [s for *_, s in e1]  # new order and/or new posterior noise each epoch


@pytest.mark.parametrize("kind", ["folder", "synthetic"])
def test_map_style_batches_do_not_depend_on_the_worker_count(kind, preprocessed):
    # noise and flips are drawn per sample from (seed, epoch, index): 0 or 2 workers, fresh or persistent, the same
    def epochs(workers):
        if kind == "folder":
            dm = LatentFolderDataModule(root=str(preprocessed), batch_size=2, flip=True,
                                        **{**COMMON, "num_workers": workers})
        else:
            dm = SyntheticDataModule(num_samples=9, batch_size=2, flip=True, latent_channels=4, latent_size=4,
                                     num_workers=workers)
        dm.trainer = trainer(1)
        loader = dm.train_dataloader()
        out = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            out.append(torch.cat([x for x, _ in loader]))
        return out

    serial, parallel = epochs(0), epochs(2)
    assert len(serial[0]) == 4 and all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(*serial)  # a new order and new draws each epoch


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_a_loader_built_after_resume_at_starts_at_the_restored_position(kind, preprocessed):
    # Lightning creates the loader's iterator before any training hook: with workers the first batches are fetched
    # at once, so the position must be in the loader as it is built (ResumeState calls resume_at at restore)
    cls = LatentFolderDataModule if kind == "folder" else ShardDataModule

    def epoch_one(rank, resume_at=None):
        dm = cls(root=str(preprocessed), batch_size=2, flip=True, **{**COMMON, "num_workers": 2})
        dm.trainer = trainer(rank, epoch=1)
        if resume_at:
            dm.resume_at(*resume_at)
        return [x for x, _ in iter(dm.train_dataloader())]

    for rank in (0, 1):
        full = epoch_one(rank)
        resumed = epoch_one(rank, resume_at=(1, 1 * 2 * 2))  # one step of 2 ranks x 2 samples done
        assert len(full) == (2 if kind == "folder" else 4) and len(resumed) == len(full) - 1
        assert all(torch.equal(a, b) for a, b in zip(full[1:], resumed)), rank
        assert len(epoch_one(rank, resume_at=(0, 4))) == len(full)  # a position in another epoch: not this one's


class Learner(Recorder):
    """Records each step's batch by global step and learns from it (SGD), so the weights depend on the data."""

    def training_step(self, batch, _):
        x, _ = batch
        self.seen[self.global_step] = x.clone()
        return (self.w - x.mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_folder_run_resumed_mid_epoch_with_workers_reads_and_learns_as_the_uninterrupted_one(preprocessed, tmp_path):
    # through Lightning's own resume (its loader iterator is created before any training hook): 9 latents, batches of
    # 2: 4 steps an epoch; resumed after step 5 (epoch 1, one batch done), on 2 workers where the first run had none
    import lightning as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from dmf.train.requeue import ResumeState

    def fit(name, workers, ckpt=None):
        dm = LatentFolderDataModule(root=str(preprocessed), batch_size=2, flip=True,
                                    **{**COMMON, "num_workers": workers})
        module = Learner()
        every_5 = ModelCheckpoint(dirpath=tmp_path / name, every_n_train_steps=5, save_top_k=-1, filename="step{step}")
        pl.Trainer(max_steps=7, accelerator="cpu", devices=1, logger=False, callbacks=[ResumeState(), every_5],
                   enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule=dm, ckpt_path=ckpt)
        return module

    whole = fit("whole", 0)
    resumed = fit("resumed", 2, ckpt=next((tmp_path / "whole").glob("step*5*.ckpt")))
    assert sorted(whole.seen) == list(range(7)) and sorted(resumed.seen) == [5, 6]
    assert all(torch.equal(resumed.seen[s], whole.seen[s]) for s in (5, 6))
    assert torch.equal(resumed.w, whole.w) and whole.w.item() != 0
