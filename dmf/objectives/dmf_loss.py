"""The Decoupled MeanFlow objective: a flow-matching term at t_fm plus a MeanFlow term at (t, r)."""
import torch

from dmf.objectives.labels import drop_labels
from dmf.objectives.paths import per_sample
from dmf.objectives.weighting import adaptive_loss


class DMFLoss:
    def __init__(self, time, guidance, cfg_prob: float = 0.1):
        if not 0.0 <= cfg_prob < 1.0:
            raise ValueError(f"objective.cfg_prob={cfg_prob} must lie in [0, 1)")
        self.time, self.guidance, self.cfg_prob = time, guidance, cfg_prob

    def to(self, device):
        self.guidance.to(device)
        return self

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor):
        n, path = x.shape[0], self.time.path
        y, dropped = drop_labels(y, self.cfg_prob, net.num_classes)

        # Flow-matching term on the diagonal r = t.
        t_fm = self.time.sample_fm(n, device=x.device).to(x.dtype)
        x_fm, v_fm = path.interpolate(x, torch.randn_like(x), t_fm)
        v_tgt_fm = self.guidance(net, x_fm, t_fm, y, dropped, v_fm)
        v_hat, lv_fm = net(x_fm, t_fm, t_fm, y, return_logvar=True)
        loss_fm = adaptive_loss(v_hat, v_tgt_fm, lv_fm)

        # MeanFlow term: u = v - (t - r) du/dt, du/dt by one forward-mode JVP with tangents (v_tgt, 1, 0).
        t, r = (s.to(x.dtype) for s in self.time.sample_tr(n, device=x.device))
        x_t, v = path.interpolate(x, torch.randn_like(x), t)
        v_tgt = self.guidance(net, x_t, t, y, dropped, v)
        (u, lv_mf), (du_dt, _) = torch.func.jvp(
            lambda x_, t_, r_: net(x_, t_, r_, y, return_logvar=True),
            (x_t, t, r), (v_tgt, torch.ones_like(t), torch.zeros_like(r)),
        )
        u_tgt = (v_tgt + per_sample(r - t, x) * du_dt).detach()
        loss_mf = adaptive_loss(u, u_tgt, lv_mf)

        loss = 0.5 * (loss_fm.mean() + loss_mf.mean())
        logs = {
            "loss_fm": loss_fm.mean().detach(),
            "loss_mf": loss_mf.mean().detach(),
            "mse_fm": (v_hat - v_tgt_fm).pow(2).mean().detach(),
            "mse_mf": (u - u_tgt).pow(2).mean().detach(),
        }
        return loss, logs
