"""The base of flow-map networks u = net(x, t, r, y): the shared trunk plus the log-variance head that the DMF
objective's adaptive weighting reads. DMFT and the MeanFlow baseline differ only in how blocks see (t, r)."""
import torch
from torch import nn

from dmf.models.flow_transformer import FlowTransformer
from dmf.models.layers import sinusoid


class FlowMapTransformer(FlowTransformer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Linear(256 -> 1) over concat(sinusoid_128(t), sinusoid_128(r)), zero-initialised (key name as released)
        self.logvar_linear = nn.Linear(256, 1)
        nn.init.zeros_(self.logvar_linear.weight)
        nn.init.zeros_(self.logvar_linear.bias)

    def logvar(self, t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([sinusoid(t, 128), sinusoid(r, 128)], dim=-1).to(self.logvar_linear.weight.dtype)
        return self.logvar_linear(feats).view(-1, 1, 1, 1)
