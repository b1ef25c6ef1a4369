"""Shared test utilities: tiny models, config composition, compat loading, scripts run as a user runs them."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
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
    """`python <script> <args>` (script relative to the repo root: run.py, bench/...), as a user types it. One torch
    thread: the tiny test networks gain nothing from more, and spinning threads stall a shared 2-core machine.
    check: assert it exited 0, showing the tails of its output. unset: environment variables the script must not see
    (e.g. TRITON_INTERPRET, which tests/conftest.py sets); env: ones to set. launcher: python's arguments before the
    script, e.g. ("-m", "torch.distributed.run", "--nproc_per_node=2") for torchrun.
    Runs in a child of this worker's warm interpreter (tests/warm_python.py) where nothing read at import differs;
    else, or with DMF_TEST_COLD=1, in a new process."""
    env = {**{key: value for key, value in os.environ.items() if key not in unset}, **(env or {})}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, *launcher, str(ROOT / script), *args]
    warm = None if launcher or os.environ.get("DMF_TEST_COLD") else WarmPython.get()
    if warm is not None and warm.can_run(env):
        out = warm.run(command, cwd, env, timeout)
    else:
        out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


class WarmPython:
    """This worker's tests/warm_python.py server, started at the first script run."""
    # variables the preloaded libraries or the interpreter read at import or start: a launch whose environment
    # differs from the server's in one of them needs a new Python (others, e.g. PATH or the PL_GLOBAL_SEED that an
    # in-process training sets in this worker, are read at run time, from the launch's environment)
    IMPORT_TIME_ENV = ("PYTHON", "LD_", "OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH", "CUDA", "TRITON", "HF_")
    _server: "WarmPython | None" = None

    @classmethod
    def get(cls) -> "WarmPython | None":
        if cls._server is None:
            cls._server = cls()
        return cls._server if cls._server.proc is not None else None

    def __init__(self):
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "warm_python.py")], cwd=ROOT, env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":  # e.g. an import started a thread: run cold
            self.proc.kill()
            self.proc = None

    def can_run(self, env: dict) -> bool:
        differ = [k for k in {*env, *self.env} if env.get(k) != self.env.get(k)]
        return not any(k.startswith(self.IMPORT_TIME_ENV) for k in differ)

    def run(self, command: list, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """command: [python, script, *args]."""
        with tempfile.TemporaryDirectory() as tmp:
            stdout, stderr = Path(tmp, "stdout"), Path(tmp, "stderr")
            stdout.touch(), stderr.touch()
            request = dict(script=command[1], args=command[2:], cwd=str(cwd), env=env, stdout=str(stdout),
                           stderr=str(stderr))
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = int(self.proc.stdout.readline())
            timed_out = threading.Event()
            timer = threading.Timer(timeout, kill_group, (pid, timed_out))
            timer.start()
            status = int(self.proc.stdout.readline())
            timer.cancel()
            out, err = stdout.read_text(errors="replace"), stderr.read_text(errors="replace")
        if timed_out.is_set():  # as subprocess.run(timeout=...) says it
            raise subprocess.TimeoutExpired(command, timeout, out, err)
        return subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status), out, err)


def kill_group(pid: int, killed: threading.Event) -> None:
    """Kills the job's process group (the script and what it started)."""
    killed.set()
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it had just ended
        pass
