"""The LightningModule: wires a network, an objective, AdamW, warm-up and EMA. No math lives here."""
import lightning as L
import torch

from dmf.core.seeds import generator
from dmf.objectives.draws import take
from dmf.train.ema import ema_decay, make_ema, update_ema
from dmf.train.fsdp import shard, unshard_for_step


# what configure_optimizers and optimizer_step read: another key in optim / ema would do nothing
OPTIONS = {"optim": ("lr", "betas", "weight_decay", "eps", "warmup_steps"), "ema": ("decay", "warmup")}


class TrainModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, objective, optim: dict, ema: dict, seed: int = 0):
        super().__init__()
        self.net = net
        self.ema_net = make_ema(net)  # sampled from and saved in every checkpoint
        self.objective = objective
        self.optim_cfg, self.ema_cfg, self.seed = dict(optim), dict(ema), int(seed)
        self._draws = None  # (optimizer step, the draws of all its micro-batches)

    def configure_model(self):
        if self.device_mesh is not None:  # trainer=fsdp (dmf/train/fsdp.py); the EMA copy stays whole
            shard(self.net, self.device_mesh["data_parallel"])

    def on_fit_start(self):
        self.objective.to(self.device)  # frozen teachers/encoders live outside the state dict

    def step_draws(self, x: torch.Tensor, batch_idx: int) -> dict:
        """This micro-batch's share of the optimizer step's draws. The draws come from a stream seeded by
        (seed, rank, step): ranks draw independently, a resumed run continues exactly, and the draws of a step
        do not depend on how it is split into accumulation micro-batches."""
        k, n = self.trainer.accumulate_grad_batches, x.shape[0]
        micro = batch_idx % k
        if self._draws is None or self._draws[0] != self.global_step:
            g = generator(x.device, self.seed, self.global_rank, self.global_step)
            self._draws = (self.global_step, self.objective.draw(k * n, x, g))
        return take(self._draws[1], micro * n, (micro + 1) * n)

    def training_step(self, batch, batch_idx):
        *images, x, y = batch  # (image, latent, label) when the objective aligns with the raw images (REPA)
        extra = {"images": images[0]} if images else {}
        unshard_for_step(self.net)  # trainer=fsdp: no all-gather may run inside the objective's JVP
        loss, logs = self.objective(self.net, x, y, draws=self.step_draws(x, batch_idx), **extra)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Lightning calls this once per optimizer step (after all accumulation micro-batches): the EMA moves
        # exactly once per update of the online weights.
        super().optimizer_step(*args, **kwargs)
        decay = ema_decay(self.global_step, self.ema_cfg["decay"], self.ema_cfg.get("warmup", False))
        update_ema(self.ema_net, self.net, decay)

    def configure_optimizers(self):
        c = self.optim_cfg
        opt = torch.optim.AdamW(
            self.net.parameters(), lr=c["lr"], betas=tuple(c["betas"]), weight_decay=c["weight_decay"], eps=c["eps"]
        )
        warmup = max(int(c.get("warmup_steps", 0)), 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
