"""DMFT: the decoupled flow-map transformer u = net(x, t, r, y).

The first `dmf_depth` blocks (encoder) see t, the rest and the final layer (decoder) see r; with r = t
it computes exactly the SiT with the same weights, which is why a SiT checkpoint initialises it.
"""
from dmf.models.flow_map import FlowMapTransformer


class DMFT(FlowMapTransformer):
    def __init__(self, *, dmf_depth: int, **kwargs):
        super().__init__(**kwargs)
        if not 0 < dmf_depth < self.depth:
            raise ValueError(
                f"model.dmf_depth={dmf_depth} must satisfy 0 < dmf_depth < depth={self.depth} "
                f"(encoder blocks see t, the remaining decoder blocks see r)"
            )
        self.dmf_depth = dmf_depth

    def forward(self, x, t, r, y, return_logvar: bool = False):
        t, r = self.as_time(t, x), self.as_time(r, x)
        h = self.embed(x)
        c_t, c_r = self.condition(t, y), self.condition(r, y)
        for i, block in enumerate(self.blocks):
            h = block(h, c_t if i < self.dmf_depth else c_r)
        u = self.unpatchify(self.final_layer(h, c_r))
        return (u, self.logvar(t, r)) if return_logvar else u
