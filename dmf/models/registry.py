"""Model names such as `DMFT-XL/2`, `MF-L/2` or `SiT-B/4` -> constructed networks."""
from dmf.core.errors import ConfigError
from dmf.models.compile import compile_mode, compile_network
from dmf.models.dmft import DMFT
from dmf.models.meanflow import MeanFlowTransformer
from dmf.models.sit import SiT

# (depth, hidden_size, num_heads); T is the tiny size of the embedded digits task.
SIZES = {
    "T": (6, 128, 4),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "M": (16, 1024, 16),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
FAMILIES = {"DMFT": DMFT, "MF": MeanFlowTransformer, "SiT": SiT}
PATCHES = (1, 2, 4, 8)


def parse_name(name: str) -> tuple[str, str, int]:
    """'DMFT-XL/2' -> ('DMFT', 'XL', 2), with one clear error for anything else."""
    try:
        family, rest = name.split("-", 1)
        size, patch = rest.split("/")
        patch = int(patch)
    except ValueError:
        family = size = patch = None
    if family not in FAMILIES or size not in SIZES or patch not in PATCHES:
        raise ValueError(
            f"model.name={name!r} is not <family>-<size>/<patch> with family in {sorted(FAMILIES)}, "
            f"size in {list(SIZES)}, patch in {list(PATCHES)} (e.g. DMFT-XL/2)"
        )
    return family, size, patch


def check_split(name: str, dmf_depth) -> None:
    """model.dmf_depth belongs to DMFT: required there, refused by the MeanFlow baseline (it has no split)."""
    family = parse_name(name)[0]
    if family == "DMFT" and dmf_depth is None:
        raise ConfigError("model.dmf_depth is required for DMFT (the paper uses 20 of 28 blocks for XL)")
    if family == "MF" and dmf_depth is not None:
        raise ConfigError(f"model.dmf_depth={dmf_depth} does not apply to {name}: the MeanFlow baseline has no "
                          f"encoder/decoder split (set model.dmf_depth=null, or use a DMFT model)")


def build_model(
    name: str,
    input_size: int,
    in_channels: int,
    num_classes: int,
    dmf_depth: int | None = None,
    qk_norm: bool = False,
    attention: str = "auto",
    mlp_ratio: float = 4.0,
    depth: int | None = None,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    repa_depth: int = 8,
    z_dims: tuple[int, ...] | list[int] = (),
    projector_dim: int = 2048,
    compile: bool | str = False,
):
    """Build a DMFT, MF (MeanFlow baseline) or SiT; depth/hidden_size/num_heads default to the named size;
    `compile`: torch.compile it (true, or a torch.compile mode: dmf.models.compile)."""
    family, size, patch = parse_name(name)
    d, h, nh = SIZES[size]
    common = dict(
        input_size=input_size, patch_size=patch, in_channels=in_channels, hidden_size=hidden_size or h,
        depth=depth or d, num_heads=num_heads or nh, mlp_ratio=mlp_ratio, num_classes=num_classes,
        qk_norm=qk_norm, attention=attention,
    )
    check_split(name, dmf_depth)
    if family == "DMFT":
        net = DMFT(dmf_depth=dmf_depth, **common)
    elif family == "MF":
        net = MeanFlowTransformer(**common)
    else:
        net = SiT(repa_depth=repa_depth, z_dims=tuple(z_dims), projector_dim=projector_dim, **common)
    mode = compile_mode(compile)
    return compile_network(net, mode=mode) if mode else net
