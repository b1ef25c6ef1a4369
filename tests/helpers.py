"""Shared test utilities: tiny models, config composition, compat loading, scripts run as a user runs them."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from dmf.config import register_resolvers
from dmf.models import build_model

ROOT = Path(__file__).parents[1]
CONF = ROOT / "conf"
COMPAT = Path(__file__).parent / "fixtures" / "compat"


def load_compat(name: str) -> dict:
    return torch.load(COMPAT / name, weights_only=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def reference_kwargs(config: dict) -> dict:
    """Our constructor arguments from a compat file's reference-constructor config."""
    keys = ("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio", "num_classes")
    kwargs = {k: config[k] for k in keys}
    kwargs["qk_norm"] = config.get("qk_norm", False)
    return kwargs


def tiny_dmft(**overrides) -> torch.nn.Module:
    kw = dict(input_size=8, in_channels=1, num_classes=10, dmf_depth=2, depth=3, hidden_size=32, num_heads=2)
    kw.update(overrides)
    return build_model("DMFT-T/2", **kw)


def tiny_mf(**overrides) -> torch.nn.Module:
    kw = dict(input_size=8, in_channels=1, num_classes=10, depth=3, hidden_size=32, num_heads=2)
    kw.update(overrides)
    return build_model("MF-T/2", **kw)


def tiny_sit(**overrides) -> torch.nn.Module:
    kw = dict(input_size=8, in_channels=1, num_classes=10, depth=3, hidden_size=32, num_heads=2)
    kw.update(overrides)
    return build_model("SiT-T/2", **kw)


def compose_config(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_python(script: str, *args: str, cwd: Path = ROOT, check: bool = False, timeout: int = 300,
               unset: tuple[str, ...] = (), launcher: tuple[str, ...] = (), env: dict | None = None
               ) -> subprocess.CompletedProcess:
    """`python <script> <args>` in a subprocess (script relative to the repo root: run.py, bench/...), as a user
    types it. One torch thread: the tiny test networks gain nothing from more, and spinning threads stall a shared
    2-core machine. check: assert it exited 0, showing the tails of its output. unset: environment variables the
    script must not see (e.g. TRITON_INTERPRET, which tests/conftest.py sets); env: ones to set. launcher: python's
    arguments before the script, e.g. ("-m", "torch.distributed.run", "--nproc_per_node=2") for torchrun."""
    env = {**{key: value for key, value in os.environ.items() if key not in unset}, **(env or {})}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, *launcher, str(ROOT / script), *args], cwd=cwd, capture_output=True,
                         text=True, timeout=timeout, env=env)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out
