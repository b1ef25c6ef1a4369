"""Reference statistics files.

- EDM2-style pickle (what the DMF authors publish as imgnet256.pkl / imgnet512.pkl):
  {"fid": {"mu", "sigma"}, "fd_dinov2": {"mu", "sigma"}, ...}; we may add {"pr": {"features"}}.
- ADM / EDM `.npz` with `mu` and `sigma` (Inception pool statistics): read as {"fid": {"mu", "sigma"}}.
Pickles are read with an allow-list unpickler (numpy arrays, dicts, scalars): a downloaded file cannot run code.
"""
import codecs
import io
import pickle
from pathlib import Path

import numpy as np

from dmf.core.errors import ConfigError
from dmf.core.files import atomic_path
from dmf.models.hub import resolve_path

_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("builtins", "dict"),
            ("builtins", "list"), ("builtins", "tuple"), ("builtins", "float"), ("builtins", "int")}
# numpy's array and scalar reconstructors, written as numpy.core.* (numpy 1.x) or numpy._core.* (numpy 2.x);
# _frombuffer is what protocol 5 (Python 3.14's default) uses for arrays
_NUMPY_CORE = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_DICT_LIKE = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}  # EDM/EDM2 tooling may pickle these


def _latin1_encode(text, encoding="latin1"):
    """Protocol 2 stores bytes as _codecs.encode(str, 'latin1'); only that use is allowed."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed in reference statistics")
    return codecs.encode(text, "latin1")


def _numpy_core(submodule: str):
    core = np._core if hasattr(np, "_core") else np.core
    return getattr(core, submodule)


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        head, _, tail = module.rpartition(".")
        if head in ("numpy.core", "numpy._core") and (tail, name) in _NUMPY_CORE:
            return getattr(_numpy_core(tail), name)  # this numpy's function, whichever version wrote the file
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in _DICT_LIKE:
            return dict
        if module.startswith("numpy") and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"reference statistics may hold only numpy arrays and dicts, found {module}.{name}")


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def load_reference(uri: str) -> dict:
    """{metric: {...}} from a .pkl or .npz given as a local path or hf:// URI."""
    path = resolve_path(uri)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                if "mu" not in z or "sigma" not in z:
                    raise ConfigError(f"{path} has {sorted(z.files)}, expected 'mu' and 'sigma' (ADM/EDM .npz statistics)")
                return {"fid": {"mu": z["mu"].astype(np.float64), "sigma": z["sigma"].astype(np.float64)}}
        with open(path, "rb") as f:
            ref = _plain(_SafeUnpickler(io.BufferedReader(f)).load())
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{uri} is not a reference-statistics file (.pkl dict or .npz with mu/sigma): {err}") from err
    if not isinstance(ref, dict) or not all(isinstance(v, dict) for v in ref.values()):
        raise ConfigError(f"{uri}: expected a dict {{metric: {{mu, sigma}}}}, got {type(ref).__name__}")
    return ref


def save_reference(ref: dict, path: str | Path, overwrite: bool = False) -> Path:
    """Write `ref` as .pkl (all entries) or .npz (the `fid` entry only); never replaces a file unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass eval.overwrite=true to replace it or choose another eval.ref_out")
    if path.suffix.lower() not in (".npz", ".pkl"):
        raise ValueError(f"{path}: reference statistics are written as .pkl or .npz")
    with atomic_path(path) as tmp:
        _write_stats(ref, tmp)
    return path


def _write_stats(ref: dict, tmp: Path):
    if tmp.suffix.lower() == ".npz":
        if set(ref) != {"fid"}:
            raise ValueError(f".npz holds only Inception statistics ('fid'); these have {sorted(ref)}: "
                             f"write a .pkl, or keep only fid in eval.metrics")
        with open(tmp, "wb") as f:
            np.savez(f, mu=np.asarray(ref["fid"]["mu"], np.float64), sigma=np.asarray(ref["fid"]["sigma"], np.float64))
    else:
        with open(tmp, "wb") as f:
            pickle.dump({k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in ref.items()}, f)
