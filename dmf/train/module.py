"""The LightningModule: wires a network, an objective, AdamW, warm-up and EMA. No math lives here."""
import lightning as L
import torch

from dmf.train.ema import ema_decay, make_ema, update_ema


class TrainModule(L.LightningModule):
    def __init__(self, net: torch.nn.Module, objective, optim: dict, ema: dict):
        super().__init__()
        self.net = net
        self.ema_net = make_ema(net)  # sampled from and saved in every checkpoint
        self.objective = objective
        self.optim_cfg, self.ema_cfg = dict(optim), dict(ema)

    def on_fit_start(self):
        self.objective.to(self.device)  # frozen teachers/encoders live outside the state dict

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, logs = self.objective(self.net, x, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
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
