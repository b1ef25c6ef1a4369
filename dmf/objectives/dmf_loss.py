"""The Decoupled MeanFlow objective: a flow-matching term at t_fm plus a MeanFlow term at (t, r)."""
import torch

from dmf.objectives.draws import Draws, gaussian
from dmf.objectives.labels import apply_drop, drop_mask
from dmf.core.paths import per_sample
from dmf.objectives.weighting import PAIRS, adaptive_loss


# How the MeanFlow term gets u (with gradients) and du/dt (a constant of the target):
#   joint: one JVP whose primal output carries the gradient (the released code); autograd keeps the tangent
#          computation's graph alive with the primal's, and every pass runs a JVP-capable attention kernel;
#   split: du/dt from a JVP without autograd (nothing saved for backward), u from its own tangent-free pass
#          (fast SDPA / flash): one more forward, much less memory. Same loss and gradients.
JVP_MODES = ("joint", "split")


class DMFLoss:
    def __init__(self, time, guidance, cfg_prob: float = 0.1, logvar_pairs: str = "diagonal", jvp: str = "joint"):
        if not 0.0 <= cfg_prob < 1.0:
            raise ValueError(f"objective.cfg_prob={cfg_prob} must lie in [0, 1)")
        if logvar_pairs not in PAIRS:
            raise ValueError(f"objective.logvar_pairs={logvar_pairs!r} is not one of {' | '.join(PAIRS)}")
        if jvp not in JVP_MODES:
            raise ValueError(f"objective.jvp={jvp!r} is not one of {' | '.join(JVP_MODES)}")
        self.time, self.guidance, self.cfg_prob, self.logvar_pairs = time, guidance, cfg_prob, logvar_pairs
        self.jvp = jvp

    def to(self, device):
        self.guidance.to(device)
        return self

    def draw(self, n: int, x: torch.Tensor, generator=None) -> Draws:
        """Every random choice of a step for n samples shaped like x[0]: label drops, times, both noises."""
        t, r = self.time.sample_tr(n, device=x.device, generator=generator)
        return {
            "dropped": drop_mask(n, self.cfg_prob, x.device, generator),
            "t_fm": self.time.sample_fm(n, device=x.device, generator=generator).to(x.dtype),
            "t": t.to(x.dtype), "r": r.to(x.dtype),
            "e_fm": gaussian(n, x.shape[1:], x, generator),
            "e_mf": gaussian(n, x.shape[1:], x, generator),
        }

    def __call__(self, net, x: torch.Tensor, y: torch.Tensor, draws: Draws | None = None, generator=None):
        d = draws if draws is not None else self.draw(x.shape[0], x, generator)
        path, dropped = self.time.path, d["dropped"]
        y = apply_drop(y, dropped, net.num_classes)

        # Flow-matching term on the diagonal r = t.
        t_fm = d["t_fm"]
        x_fm, v_fm = path.interpolate(x, d["e_fm"], t_fm)
        v_tgt_fm = self.guidance(net, x_fm, t_fm, y, dropped, v_fm)
        v_hat, lv_fm = net(x_fm, t_fm, t_fm, y, return_logvar=True)
        loss_fm = adaptive_loss(v_hat, v_tgt_fm, lv_fm, pairs=self.logvar_pairs)

        # MeanFlow term: u = v - (t - r) du/dt, du/dt by one forward-mode JVP with tangents (v_tgt, 1, 0).
        t, r = d["t"], d["r"]
        x_t, v = path.interpolate(x, d["e_mf"], t)
        v_tgt = self.guidance(net, x_t, t, y, dropped, v)
        u, lv_mf, du_dt = self._u_and_du_dt(net, x_t, t, r, y, v_tgt)
        u_tgt = (v_tgt + per_sample(r - t, x) * du_dt).detach()
        loss_mf = adaptive_loss(u, u_tgt, lv_mf, pairs=self.logvar_pairs)

        loss = 0.5 * (loss_fm.mean() + loss_mf.mean())
        logs = {
            "loss_fm": loss_fm.mean().detach(),
            "loss_mf": loss_mf.mean().detach(),
            "mse_fm": (v_hat - v_tgt_fm).pow(2).mean().detach(),
            "mse_mf": (u - u_tgt).pow(2).mean().detach(),
        }
        return loss, logs

    def _u_and_du_dt(self, net, x_t, t, r, y, v_tgt):
        def fn(x_, t_, r_):
            return net(x_, t_, r_, y, return_logvar=True)

        primals, tangents = (x_t, t, r), (v_tgt, torch.ones_like(t), torch.zeros_like(r))
        if self.jvp == "joint":
            (u, lv), (du_dt, _) = torch.func.jvp(fn, primals, tangents)
            return u, lv, du_dt
        with torch.no_grad():
            _, (du_dt, _) = torch.func.jvp(fn, primals, tangents)
        u, lv = fn(*primals)
        return u, lv, du_dt
