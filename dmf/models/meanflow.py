"""The MeanFlow baseline (the ablations' MF-L/2): u = net(x, t, r, y) with MeanFlow's (t, t - r) conditioning.

Every block and the final layer see emb_t(t) + emb_h(t - r) + y_emb: two timestep embedders whose outputs are
summed, no encoder/decoder split. emb_h's last layer starts at zero, so emb_h(.) = 0 and the network is exactly
the SiT with the same trunk weights, for any (t, r): a SiT checkpoint initialises it (emb_h and the log-variance
head new, REPA projectors dropped; dmf/models/checkpoint.py).
"""
from torch import nn

from dmf.models.flow_map import FlowMapTransformer
from dmf.models.layers import TimestepEmbedder


class MeanFlowTransformer(FlowMapTransformer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.h_embedder = TimestepEmbedder(self.hidden_size)
        nn.init.normal_(self.h_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.h_embedder.mlp[0].bias)
        nn.init.zeros_(self.h_embedder.mlp[2].weight)
        nn.init.zeros_(self.h_embedder.mlp[2].bias)

    def forward(self, x, t, r, y, return_logvar: bool = False):
        t, r = self.as_time(t, x), self.as_time(r, x)
        h = self.embed(x)
        c = self.condition(t, y) + self.h_embedder(t - r)
        for block in self.blocks:
            h = block(h, c)
        u = self.unpatchify(self.final_layer(h, c))
        return (u, self.logvar(t, r)) if return_logvar else u
