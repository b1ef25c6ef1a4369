"""FID (or any eval metric) during training: every N steps, n samples from the EMA network with a chosen sampler
and step count, spread over all ranks, against reference statistics; logged as `<metric>/<sampler>_<steps>`."""
import lightning as L
import torch

from dmf.core.errors import ConfigError
from dmf.eval import dist as edist
from dmf.eval.generation.precision import NETWORK_PRECISIONS
from dmf.eval.generation.loop import Plan, Renderer, run
from dmf.eval.reference.files import load_reference
from dmf.eval.reference.build import reference_states
from dmf.eval.scoring.scorer import build_scorer
from dmf.train.callbacks.common import build, due, sampling_net


class FIDCallback(L.Callback):
    def __init__(self, sampler, vae, metric_defs, extractors, steps: int = 1, every_n_steps: int = 20000,
                 num_samples: int = 10000, batch_size: int = 64, seed: int = 0, metrics=("fid",),
                 ref_stats: str | None = None, ref_source=None, chunk_size: int | None = None, labels: str = "random",
                 quantize: str = "floor", decode_precision: str = "fp32", at_train_end: bool = False,
                 autocast: str | None = None):
        self.sampler_cfg, self.vae_cfg, self.steps = sampler, vae, int(steps)
        self.metric_defs, self.extractor_defs, self.metrics = metric_defs, extractors, list(metrics)
        self.every_n_steps, self.num_samples, self.batch_size = every_n_steps, num_samples, batch_size
        # in memory the chunking does not change the result; batch-sized chunks balance the ranks best
        self.seed, self.chunk_size, self.labels, self.quantize = seed, chunk_size or batch_size, labels, quantize
        self.ref_stats, self.ref_source, self.at_train_end = ref_stats, ref_source, at_train_end
        self.decode_precision = decode_precision
        if autocast not in (None, "fp32", "bf16", "fp16"):  # (no tf32 switch here: the training run's own setting)
            raise ConfigError(f"callbacks.fid.autocast={autocast!r} must be null (fp32), fp32, bf16 or fp16")
        self.autocast = NETWORK_PRECISIONS.get(autocast)
        self.sampler = self.vae = self.scorer = self.reference = None
        self._last = -1
        self.history: list[tuple[int, dict]] = []

    def setup(self, trainer, pl_module, stage):
        # Fail at setup, not hours into training: sampler, metrics, extractor weights, reference statistics.
        self.sampler = build(self.sampler_cfg, steps=self.steps)
        self.vae = build(self.vae_cfg)
        self.scorer = build_scorer(self.metrics, self.metric_defs, self.extractor_defs)
        if self.scorer.needs_reference and self.ref_stats != "build":
            self.reference = load_reference(self.ref_stats) if self.ref_stats else None
            self.scorer.check_reference(self.reference, self.ref_stats)

    @property
    def tag(self) -> str:
        return f"{self.sampler.name}_{self.steps}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if due(trainer, self.every_n_steps, self._last):
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if self.at_train_end and trainer.global_step != self._last:
            self.evaluate(trainer, pl_module, log=False)  # logging is closed after fit; values go to loggers directly

    @torch.no_grad()
    def evaluate(self, trainer, pl_module, log: bool = True) -> dict:
        self._last = trainer.global_step
        device = pl_module.device
        info = edist.DistInfo(trainer.global_rank, trainer.world_size, 0, device)
        self.scorer.to(device)
        if isinstance(self.vae, torch.nn.Module):
            self.vae.to(device)
        if self.reference is None and self.ref_stats == "build":
            states = reference_states(build(self.ref_source), self.scorer, device, info, self.batch_size)
            self.reference = self.scorer.reference(states)
        net = sampling_net(pl_module)
        was_training = net.training
        net.eval()
        try:
            plan = Plan(self.num_samples, self.seed, net.input_shape, int(net.num_classes), self.batch_size,
                        self.chunk_size, self.labels, self.quantize)
            render = Renderer(net, self.sampler, self.vae, device, self.autocast, decode_precision=self.decode_precision)
            outcome = run(plan, render, self.scorer, info, log=lambda m: None)
            values = self.scorer.compute(outcome.states, self.reference) if trainer.is_global_zero else None
        finally:
            net.train(was_training)
        values = trainer.strategy.broadcast(values, src=0)
        named = {f"{k}/{self.tag}": float(v) for k, v in values.items()}
        self.history.append((trainer.global_step, named))
        if log:  # callback_metrics (checkpoint monitors, progress bar)
            for k, v in named.items():
                pl_module.log(k, v, logger=False, sync_dist=False)
        for logger in trainer.loggers:  # at this exact step, whatever log_every_n_steps says
            logger.log_metrics(named, step=trainer.global_step)
        return named
