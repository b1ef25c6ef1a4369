"""Nodes read key by key (optim, ema, eval, preprocess, a pipeline stage, a paper row): a misspelt key written in a
yaml file, where Hydra's struct check does not reach, would do nothing. One check, with the nearest name."""
import difflib

from dmf.core.errors import ConfigError


def check_known(where: str, node, known, error=ConfigError) -> None:
    unknown = [str(k) for k in node if k not in known]
    if not unknown:
        return
    near = difflib.get_close_matches(unknown[0], list(known), n=1, cutoff=0.7)
    hint = f"did you mean {where}.{near[0]}?" if near else f"it takes {', '.join(known)}"
    raise error(f"{where}.{unknown[0]} is not an option of {where} ({hint}); fix the name where it is set")


def flatten(d, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (an empty dict is a leaf)."""
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def under(key: str, prefixes) -> bool:
    """`key` is one of the dotted `prefixes` or lies inside one (`model.depth` is under `model`)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)
