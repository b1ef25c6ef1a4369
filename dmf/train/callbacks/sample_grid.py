"""Sample grids during training: fixed noise and labels, EMA weights, a few step counts; PNG under the run dir,
images in wandb when a WandbLogger is attached."""
from pathlib import Path

import lightning as L
import torch

from dmf.eval.generation.loop import Plan, Renderer
from dmf.eval.generation.images import make_grid, save_png
from dmf.train.callbacks.common import build, due, model_shape, sampling_net


class SampleGrid(L.Callback):
    def __init__(self, sampler, vae, steps=(1, 2, 4), num_images: int = 64, every_n_steps: int = 5000,
                 seed: int = 0, dirpath: str = "samples", at_train_end: bool = True):
        if num_images < 1:
            raise ValueError(f"sample_grid.num_images={num_images} must be >= 1")
        self.sampler_cfg, self.vae_cfg = sampler, vae
        self.steps = [int(s) for s in steps]
        self.num_images, self.every_n_steps, self.seed = num_images, every_n_steps, seed
        self.dirpath, self.at_train_end = Path(dirpath), at_train_end
        self.samplers, self.vae, self._last = None, None, -1
        self.saved: list[Path] = []

    def setup(self, trainer, pl_module, stage):
        self.samplers = {k: build(self.sampler_cfg, steps=k) for k in self.steps}  # bad sampler config fails here
        self.vae = build(self.vae_cfg)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if due(trainer, self.every_n_steps, self._last):
            self.render(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.at_train_end and trainer.global_step != self._last:
            self.render(trainer, pl_module)

    @torch.no_grad()
    def render(self, trainer, pl_module):
        self._last = trainer.global_step
        if not trainer.is_global_zero:
            return
        net = sampling_net(pl_module)
        was_training = net.training
        net.eval()
        if isinstance(self.vae, torch.nn.Module):
            self.vae.to(pl_module.device)
        classes = int(net.num_classes)
        # balanced labels: row r of a grid with `classes` columns shows class (r * cols + c) % classes
        labels = "balanced" if classes <= 16 else "random"  # digits: one column per class; ImageNet: varied
        plan = Plan(self.num_images, self.seed, model_shape(net), classes, self.num_images, labels=labels)
        nrow = classes if self.num_images % classes == 0 and classes <= 16 else None
        try:
            for k, sampler in self.samplers.items():
                images, _ = Renderer(net, sampler, self.vae, pl_module.device)(plan, torch.arange(self.num_images))
                grid = make_grid(images.cpu(), nrow=nrow)
                path = save_png(grid, self.dirpath / f"step{trainer.global_step:07d}_{sampler.name}_{k}.png")
                self.saved.append(path)
                self._log_wandb(trainer, f"samples/{sampler.name}_{k}", grid)
        finally:
            net.train(was_training)

    @staticmethod
    def _log_wandb(trainer, key, grid):
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[grid], step=trainer.global_step)
