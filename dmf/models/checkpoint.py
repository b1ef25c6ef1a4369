"""Loading checkpoints as data (never code) and weights into networks with an explicit key policy (never a silent
strict=False). `safe_load` is the one way the project reads a torch file."""
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from dmf.core.errors import UsageError
from dmf.models.meanflow import MeanFlowTransformer

# Keys that a SiT(+REPA) checkpoint has and DMFT lacks, or the reverse, when fine-tuning a flow model into
# a flow map: REPA projectors are dropped, the log-variance head keeps its fresh (zero) initialisation.
SIT_TO_DMFT = {"drop_prefixes": ("projectors.",), "init_prefixes": ("logvar_linear.",)}
# The MeanFlow baseline from a SiT: its (t - r) embedder is new too (last layer zero, so it starts as the SiT).
SIT_TO_MF = {"drop_prefixes": ("projectors.",), "init_prefixes": ("logvar_linear.", "h_embedder.")}


def pretrained_policy(net: nn.Module) -> dict:
    return SIT_TO_MF if isinstance(net, MeanFlowTransformer) else SIT_TO_DMFT


# RMS qk-norm scales may be absent as a whole: the authors pretrain SiT at 512 without qk-norm and add it for
# DMF fine-tuning, the scales starting at 1. A checkpoint with only some of them is still a mismatch.
QK_NORM_KEYS = re.compile(r".*\.attn\.[qk]_norm\.scale$")


class CheckpointMismatch(UsageError, RuntimeError):
    """Weights that do not fit the network the config builds: the user's to fix (run.py prints one line)."""


class CheckpointError(UsageError, ValueError):
    """A file that is not a readable checkpoint: missing, empty, truncated, garbage, or holding code."""


def _numpy_globals() -> list:
    """What numpy arrays and scalars need to unpickle (old partial eval states and some published files hold
    them): array reconstruction and dtypes only, under the numpy 1.x and 2.x module paths."""
    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core
    out = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(core.multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
    return out


def _describe(path: Path, key: str | None) -> str:
    return f"{key}={path}" if key else str(path)


def safe_load(path: str | Path, key: str | None = None, map_location="cpu", **kwargs):
    """torch.load with weights_only=True (tensors, containers, numbers, strings, numpy arrays): unpickling can never
    run code. `key` is the config key that named the file; every error names it, the file and the fix. Other
    keyword arguments go to torch.load (e.g. mmap=True to read a few entries of a large file)."""
    path = Path(path)
    where = _describe(path, key)
    if not path.is_file():
        raise CheckpointError(f"{where}: no such file (expected a .ckpt/.pt checkpoint)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{where}: the file is empty (an interrupted save or copy?); pass a complete checkpoint")
    if path.suffix == ".safetensors":  # a bare state dict (mode=export writes the EMA weights this way too)
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not even a torch zip file
            unsafe = []
        if unsafe:
            raise CheckpointError(
                f"{where} holds Python objects that loading would have to construct by running code "
                f"({', '.join(unsafe[:6])}{' ...' if len(unsafe) > 6 else ''}); checkpoints are read as data only "
                f"(torch.load weights_only=True), so it is refused. Fix: if you trust the file, convert it once to plain "
                f"tensors, e.g. python -c \"import torch; c = torch.load('{path}', weights_only=False); "
                f"torch.save({{'ema': c['ema'].state_dict() if hasattr(c['ema'], 'state_dict') else c['ema']}}, "
                f"'converted.pt')\" (keep the state dicts you need), and pass the converted file") from None
        raise CheckpointError(f"{where} is not a readable checkpoint ({str(err).splitlines()[-1][:200] or 'unpickling failed'})"
                              f"; pass a file written by torch.save") from None
    except Exception as err:  # garbage bytes surface as any error type inside the unpickler
        raise CheckpointError(f"{where} is not a readable checkpoint (truncated or not written by torch.save: "
                              f"{type(err).__name__}: {str(err)[:200]}); pass a complete .ckpt/.pt file") from None


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
    key: str | None = None,
) -> dict[str, list[str]]:
    """Load `source` (a path or a loaded checkpoint) into `net`.

    Every key must match in name and shape, except keys under `drop_prefixes` (ignored if present in the
    checkpoint) and `init_prefixes` (keep the network's initialisation if absent from it). Anything else
    raises CheckpointMismatch listing the offending keys. Keys matching `init_group` keep their initialisation
    when the checkpoint has none of them. Returns what was dropped and initialised. `key` names the config key of a
    path source in errors.
    """
    where = key or "the checkpoint"
    if not isinstance(source, dict):
        where = _describe(Path(source), key)
        source = safe_load(source, key)
    if not isinstance(source, dict):
        raise CheckpointError(f"{where} holds a {type(source).__name__}, not a dict of network weights")
    check_architecture(net, source, where)
    sd = extract_state_dict(source, prefer)
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{where} holds no network weights (top-level keys: {sorted(map(str, source))[:8]}); "
                              f"expected a Lightning .ckpt, an {{'ema': ..., 'model': ...}} file or a state dict")
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
        lines = [f"{where} does not fit {type(net).__name__}:"]
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


def load_pretrained(net: nn.Module, source: str | Path | dict, prefer: str = "ema",
                    key: str | None = None) -> dict[str, list[str]]:
    """Weights to fine-tune from or to sample with: strict, except REPA projectors (dropped: DMFT and sampling
    never use them), a flow map's log-variance head and the MeanFlow baseline's (t - r) embedder (kept as
    initialised when the checkpoint is a SiT's) and RMS qk-norm scales when the checkpoint has none (they start at 1)."""
    return load_weights(net, source, prefer=prefer, init_group=QK_NORM_KEYS, key=key, **pretrained_policy(net))


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


# The composed config of the run that wrote a Lightning checkpoint (dmf.train.resume_guard adds it to every one).
CONFIG_KEY = "dmf_config"


def recorded_config(path: str | Path, key: str | None = "ckpt") -> dict | None:
    """The config a checkpoint records (what its weights were trained with); None for a file that records none
    (published weights, exports, older checkpoints)."""
    if Path(path).suffix == ".safetensors":  # tensors only
        return None
    saved = safe_load(path, key=key, mmap=zipfile.is_zipfile(path))  # mmap reads a large file's few entries
    config = saved.get(CONFIG_KEY) if isinstance(saved, dict) else None
    return config if isinstance(config, dict) else None


# What a network is beyond its state dict: attributes whose change keeps every tensor shape (dmf_depth moves the
# encoder/decoder split, num_heads regroups the same weights). Checkpoints record them (ARCHITECTURE_KEY).
ARCHITECTURE_KEY = "dmf_architecture"
# each setting -> (the config key that sets it by itself, to paste in the fix, or None; how the config changes it)
_ARCH_ATTRS = {"dmf_depth": ("model.dmf_depth", "model.dmf_depth"),
               "num_heads": ("model.num_heads", "model.num_heads (or the size in model.name)"),
               "depth": ("model.depth", "model.depth (or the size in model.name)"),
               "hidden_size": ("model.hidden_size", "model.hidden_size"),
               "patch_size": (None, "the patch in model.name"), "input_size": (None, "data.resolution"),
               "in_channels": (None, "data (latent channels)"),
               "num_classes": ("data.num_classes", "data.num_classes")}


def architecture(net: nn.Module) -> dict:
    """The shape-invisible and structural settings of `net`, as plain values (safe to store in a checkpoint)."""
    arch = {"class": type(net).__name__}
    for attr in _ARCH_ATTRS:
        value = getattr(net, attr, None)
        if isinstance(value, (int, float, str, bool)):
            arch[attr] = value
    return arch


def check_architecture(net: nn.Module, checkpoint: dict, where: str = "the checkpoint") -> None:
    """Raise if `checkpoint` records an architecture that differs from `net` (same class: every recorded setting;
    another class, e.g. a SiT initialising a DMFT: the settings both have, except the DMFT's own split)."""
    saved = checkpoint.get(ARCHITECTURE_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(saved, dict):
        return  # official files and older checkpoints: the state-dict check is all there is
    own = architecture(net)
    same_class = saved.get("class") == own["class"]
    differ = [a for a in _ARCH_ATTRS if a in saved and a in own and saved[a] != own[a]
              and (same_class or a != "dmf_depth")]
    if differ:
        what = ", ".join(f"{a}={saved[a]} (config builds {own[a]}; set {_ARCH_ATTRS[a][1]})" for a in differ)
        paste = " ".join(f"{_ARCH_ATTRS[a][0]}={saved[a]}" for a in differ if _ARCH_ATTRS[a][0])
        fix = f"add {paste}" if paste else "make the config match the checkpoint"
        if paste and not all(_ARCH_ATTRS[a][0] for a in differ):
            fix += " and set the others as said"
        raise CheckpointMismatch(f"{where} was saved from a "
                                 f"{saved.get('class')} with {what}; its weights would run as another network. "
                                 f"Fix: {fix}, or pass the overrides its run was launched with")
