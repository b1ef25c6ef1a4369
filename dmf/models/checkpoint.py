"""Loading weights into networks with an explicit key policy (never a silent strict=False)."""
import re
from pathlib import Path

import torch
from torch import nn

# Keys that a SiT(+REPA) checkpoint has and DMFT lacks, or the reverse, when fine-tuning a flow model into
# a flow map: REPA projectors are dropped, the log-variance head keeps its fresh (zero) initialisation.
SIT_TO_DMFT = {"drop_prefixes": ("projectors.",), "init_prefixes": ("logvar_linear.",)}
# RMS qk-norm scales may be absent as a whole: the authors pretrain SiT at 512 without qk-norm and add it for
# DMF fine-tuning, the scales starting at 1. A checkpoint with only some of them is still a mismatch.
QK_NORM_KEYS = re.compile(r".*\.attn\.[qk]_norm\.scale$")


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
    init_group: re.Pattern | None = None,
) -> dict[str, list[str]]:
    """Load `source` (a path or a loaded checkpoint) into `net`.

    Every key must match in name and shape, except keys under `drop_prefixes` (ignored if present in the
    checkpoint) and `init_prefixes` (keep the network's initialisation if absent from it). Anything else
    raises CheckpointMismatch listing the offending keys. Keys matching `init_group` keep their initialisation
    when the checkpoint has none of them. Returns what was dropped and initialised.
    """
    if not isinstance(source, dict):
        source = torch.load(source, map_location="cpu", weights_only=False)
    sd = extract_state_dict(source, prefer)
    own = net.state_dict()
    dropped = sorted(k for k in sd if k not in own and k.startswith(tuple(drop_prefixes)))
    group_absent = init_group is not None and not any(init_group.match(k) for k in sd)
    initialised = sorted(k for k in own if k not in sd and (k.startswith(tuple(init_prefixes))
                                                           or (group_absent and init_group.match(k))))
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
    never use them), a DMFT's log-variance head (kept as initialised when the checkpoint is a SiT's) and RMS
    qk-norm scales when the checkpoint has none (they start at 1)."""
    return load_weights(net, source, prefer=prefer, init_group=QK_NORM_KEYS, **SIT_TO_DMFT)


def describe_load(report: dict[str, list[str]]) -> str:
    """One line for the log: what the key policy dropped and what kept its initialisation, by module."""
    def groups(keys):
        names = sorted({"qk-norm scales (start at 1)" if QK_NORM_KEYS.match(k) else k.split(".")[0] for k in keys})
        return ", ".join(names)
    parts = []
    if report["dropped"]:
        parts.append(f"dropped {len(report['dropped'])} keys ({groups(report['dropped'])})")
    if report["initialised"]:
        parts.append(f"kept the initialisation of {len(report['initialised'])} keys ({groups(report['initialised'])})")
    return "; ".join(parts) or "every key loaded"
