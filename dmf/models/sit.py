"""SiT flow model (velocity network) with optional REPA projectors."""
from torch import nn

from dmf.models.flow_transformer import FlowTransformer


def projector_mlp(hidden_size: int, projector_dim: int, z_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(hidden_size, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, z_dim),
    )


class SiT(FlowTransformer):
    """v = net(x, t, r, y). A flow model is the r = t diagonal of a flow map, so r is accepted and unused:
    a flow-map sampler driving a SiT performs plain Euler steps."""

    def __init__(self, *, repa_depth: int = 8, z_dims: tuple[int, ...] = (), projector_dim: int = 2048, **kwargs):
        super().__init__(**kwargs)
        if z_dims and not 1 <= repa_depth <= self.depth:
            raise ValueError(f"repa_depth={repa_depth} must lie in [1, depth={self.depth}]")
        self.repa_depth = repa_depth
        self.projectors = nn.ModuleList([projector_mlp(self.hidden_size, projector_dim, z) for z in z_dims])

    def forward(self, x, t, r=None, y=None, return_features: bool = False):
        t = self.as_time(t, x)
        h = self.embed(x)
        c = self.condition(t, y)
        zs = []
        for i, block in enumerate(self.blocks):
            h = block(h, c)
            if i + 1 == self.repa_depth and self.projectors and return_features:
                zs = [proj(h) for proj in self.projectors]
        v = self.unpatchify(self.final_layer(h, c))
        return (v, zs) if return_features else v
