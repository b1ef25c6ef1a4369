"""Non-finite losses and gradients stop training (or, if asked, skip the update), never pass silently.

Settings (conf/trainer/default.yaml; not passed on to lightning.Trainer):
  trainer.on_nonfinite: stop (default) | skip
  trainer.max_nonfinite_skips: with skip, how many updates may be dropped in a row before the run stops anyway.
The check runs before the optimizer step, on gradients that DDP has already averaged, so every rank decides the
same way and the weights (and so every checkpoint) never see the non-finite update. Under fp16 with a gradient
scaler, infinite gradients are the scaler's business (it skips those steps itself); the loss is still checked.
"""
import logging
import math

import lightning as L
import torch

log = logging.getLogger(__name__)

ACTIONS = ("stop", "skip")
TRAINER_KEYS = ("on_nonfinite", "max_nonfinite_skips")  # ours, popped before lightning.Trainer(**trainer)


class NonFiniteError(RuntimeError):
    pass


class NonFiniteGuard(L.Callback):
    def __init__(self, action: str = "stop", max_skips: int = 10):
        if action not in ACTIONS:
            raise ValueError(f"trainer.on_nonfinite={action!r} must be one of {ACTIONS}")
        if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 0:
            raise ValueError(f"trainer.max_nonfinite_skips={max_skips!r} must be a non-negative integer")
        self.action, self.max_skips = action, max_skips
        self.skipped_in_a_row = self.skipped_total = 0
        self._bad_terms: list[str] = []

    def on_before_backward(self, trainer, pl_module, loss):
        if not bool(torch.isfinite(loss.detach()).all()):
            self._bad_terms = self._terms(trainer) or [f"train/loss={loss.detach().float().item()}"]

    @staticmethod
    def _terms(trainer) -> list[str]:
        """The logged loss terms of this step that are not finite (the objective logs each term)."""
        out = []
        for name, value in trainer.callback_metrics.items():
            if name.startswith("train/") and isinstance(value, torch.Tensor) and value.numel() == 1:
                v = value.float().item()
                if not math.isfinite(v):
                    out.append(f"{name}={v}")
        return out

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grads_ok = scaler is not None or not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        if grads_ok and not self._bad_terms:
            self.skipped_in_a_row = 0
            return
        step = trainer.global_step
        what = ", ".join(self._bad_terms) if self._bad_terms else "the gradient norm"
        self._bad_terms = []
        if self.action == "skip" and self.skipped_in_a_row < self.max_skips:
            self.skipped_in_a_row += 1
            self.skipped_total += 1
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without gradients untouched
            log.warning("step %d: non-finite %s; update skipped (trainer.on_nonfinite=skip, %d in a row, %d in all)",
                        step, what, self.skipped_in_a_row, self.skipped_total)
            pl_module.log("train/nonfinite_skips", float(self.skipped_total))
            return
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", "") or "none saved yet"
        reason = (f"{self.skipped_in_a_row} updates in a row were already skipped (trainer.max_nonfinite_skips="
                  f"{self.max_skips})" if self.action == "skip" else "trainer.on_nonfinite=stop")
        raise NonFiniteError(
            f"non-finite values at step {step}: {what}. Training stopped before this update ({reason}); the weights "
            f"and every checkpoint on disk are finite (last checkpoint: {ckpt}). Fix: lower optim.lr, keep "
            f"trainer.gradient_clip_val, check the data, or set trainer.on_nonfinite=skip to drop such updates.")


def nonfinite_guard(cfg) -> NonFiniteGuard:
    return NonFiniteGuard(cfg.trainer.get("on_nonfinite", "stop"), cfg.trainer.get("max_nonfinite_skips", 10))
