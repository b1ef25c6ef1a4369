"""Samplers for flow models v(x, t) = net(x, t, t, y): Euler, Heun, Euler-Maruyama SDE."""
import math

from dmf.sampling.base import Sampler


class FlowEuler(Sampler):
    name = "flow_euler"

    def step(self, net, x, t, t_next, y, noise):
        return x + (t_next - t) * self.model(net, x, t, t, y)


class FlowHeun(Sampler):
    """Second order (trapezoid) except into t = 0, where the velocity is ill-posed for some paths. Both
    evaluations of a step are guided or neither, decided at the step's start t (as the released code does)."""

    name = "flow_heun"

    def step(self, net, x, t, t_next, y, noise):
        v = self.model(net, x, t, t, y)
        x_euler = x + (t_next - t) * v
        if t_next <= 0:
            return x_euler
        return x + (t_next - t) * 0.5 * (v + self.model(net, x_euler, t_next, t_next, y, interval_t=t))


class FlowSDE(Sampler):
    """Euler-Maruyama on the reverse SDE dx = [v - g^2/2 score] dt + g dW with g^2 = 2 sigma(t).

    The score comes from the velocity: score = -e_hat / sigma with e_hat solved from (x_t, v). The last step
    into t = 0 is a plain Euler step (no noise), as in SiT.
    """

    name = "flow_sde"
    stochastic = True

    def step(self, net, x, t, t_next, y, noise):
        v = self.model(net, x, t, t, y)
        dt = t_next - t
        if t_next <= 0:
            return x + dt * v
        _, e_hat = self.path.predict(x, v, x.new_full((x.shape[0],), t))
        _, sigma = self.path.coefficients(t)
        # - g^2/2 * score = sigma * e_hat / sigma = e_hat
        return x + dt * (v + e_hat) + math.sqrt(2 * sigma * -dt) * noise
