"""The trunk shared by SiT, DMFT and the MeanFlow baseline: patchify, embeddings, adaLN-Zero blocks, final layer, unpatchify."""
import torch
from torch import nn

from dmf.models.layers import DiTBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_pos_embed_2d


class FlowTransformer(nn.Module):
    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        qk_norm: bool = False,
        attention: str = "auto",
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(
                f"input size {input_size} is not divisible by patch size {patch_size}; "
                f"pick data.resolution divisible by {patch_size} x the VAE downsampling"
            )
        self.input_size, self.patch_size = input_size, patch_size
        self.in_channels = self.out_channels = in_channels
        self.hidden_size, self.depth, self.num_heads = hidden_size, depth, num_heads
        self.num_classes = num_classes  # also the index of the null class
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        grid = input_size // patch_size
        self.register_buffer(
            "pos_embed", torch.from_numpy(sincos_pos_embed_2d(hidden_size, grid)).float().unsqueeze(0), persistent=True
        )
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio, qk_norm=qk_norm, attention=attention) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input (the config's side of this fact: dmf.build.model_shape)."""
        return self.in_channels, self.input_size, self.input_size

    def initialize_weights(self):
        """DiT initialisation: xavier linears, zeroed adaLN modulations and output layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.x_embedder(x) + self.pos_embed.to(x.dtype)

    def condition(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.t_embedder(t) + self.y_embedder(y)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        n, p, c = x.shape[0], self.patch_size, self.out_channels
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(n, h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, c, h * p, w * p)

    @staticmethod
    def as_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """Per-sample time vector: scalars and 0-d tensors broadcast to the batch."""
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype if x.is_floating_point() else None)
        return t.expand(x.shape[0]) if t.ndim == 0 else t
