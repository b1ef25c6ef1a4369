"""Loading weights into networks with an explicit key policy (never a silent strict=False)."""
from pathlib import Path

import torch
from torch import nn

from dmf.models.meanflow import MeanFlowTransformer

# Keys that a SiT(+REPA) checkpoint has and DMFT lacks, or the reverse, when fine-tuning a flow model into
# a flow map: REPA projectors are dropped, the log-variance head keeps its fresh (zero) initialisation.
SIT_TO_DMFT = {"drop_prefixes": ("projectors.",), "init_prefixes": ("logvar_linear.",)}
# The MeanFlow baseline from a SiT: its (t - r) embedder is new too (last layer zero, so it starts as the SiT).
SIT_TO_MF = {"drop_prefixes": ("projectors.",), "init_prefixes": ("logvar_linear.", "h_embedder.")}


def pretrained_policy(net: nn.Module) -> dict:
    return SIT_TO_MF if isinstance(net, MeanFlowTransformer) else SIT_TO_DMFT


class CheckpointMismatch(RuntimeError):
    pass


def extract_state_dict(obj: dict, prefer: str = "ema") -> dict[str, torch.Tensor]:
    """The network weights inside a checkpoint: our Lightning checkpoints (`ema_net.` / `net.` prefixes),
    the official `{"ema": ..., "model": ...}` files, or a bare state dict."""
    if prefer not in ("ema", "model"):
        raise ValueError(f"prefer={prefer!r} must be 'ema' (EMA weights) or 'model' (online weights)")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
        for prefix in {"ema": ("ema_net.", "net."), "model": ("net.",)}[prefer]:
            sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            if sub:
                return sub
        return sd
    for key in (prefer, "ema", "model"):
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def load_weights(
    net: nn.Module,
    source: str | Path | dict,
    prefer: str = "ema",
    drop_prefixes: tuple[str, ...] = (),
    init_prefixes: tuple[str, ...] = (),
) -> dict[str, list[str]]:
    """Load `source` (a path or a loaded checkpoint) into `net`.

    Every key must match in name and shape, except keys under `drop_prefixes` (ignored if present in the
    checkpoint) and `init_prefixes` (keep the network's initialisation if absent from it). Anything else
    raises CheckpointMismatch listing the offending keys. Returns what was dropped and initialised.
    """
    if not isinstance(source, dict):
        source = torch.load(source, map_location="cpu", weights_only=False)
    sd = extract_state_dict(source, prefer)
    own = net.state_dict()
    dropped = sorted(k for k in sd if k not in own and k.startswith(tuple(drop_prefixes)))
    initialised = sorted(k for k in own if k not in sd and k.startswith(tuple(init_prefixes)))
    unexpected = sorted(k for k in sd if k not in own and k not in dropped)
    missing = sorted(k for k in own if k not in sd and k not in initialised)
    wrong_shape = sorted(k for k in sd if k in own and sd[k].shape != own[k].shape)
    if unexpected or missing or wrong_shape:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        lines = [f"checkpoint does not fit {type(net).__name__}:"]
        if missing:
            lines.append(f"  missing: {show(missing)}")
        if unexpected:
            lines.append(f"  unexpected: {show(unexpected)}")
        if wrong_shape:
            lines.append("  wrong shape: " + show([f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape]))
        lines.append("  check model.name / model.qk_norm / data.resolution against the checkpoint")
        raise CheckpointMismatch("\n".join(lines))
    kept = {k: v for k, v in sd.items() if k in own}
    own.update(kept)
    net.load_state_dict(own, strict=True)
    return {"dropped": dropped, "initialised": initialised}


def load_pretrained(net: nn.Module, source: str | Path | dict, prefer: str = "ema") -> dict[str, list[str]]:
    """Weights to fine-tune from or to sample with: strict, except REPA projectors (dropped: DMFT and sampling
    never use them) and a flow map's log-variance head (and the MeanFlow baseline's (t - r) embedder), kept as
    initialised when the checkpoint is a SiT's."""
    return load_weights(net, source, prefer=prefer, **pretrained_policy(net))
