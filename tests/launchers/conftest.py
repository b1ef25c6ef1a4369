"""SLURM tests (`-m slurm`) need a cluster: `make test-slurm` starts one on loopback. Without one they skip."""
import functools
import os
import shutil
import subprocess

import pytest


@functools.cache
def cluster_unreachable() -> str | None:
    """Why no SLURM cluster answers, or None when one does (bounded: never waits more than 10 s)."""
    if not shutil.which("sinfo"):
        return "no SLURM client (sinfo) installed; `make test-slurm` installs and starts a local cluster"
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set; `make test-slurm` starts a local cluster and sets it"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if out.returncode or not out.stdout.split():
        return f"sinfo failed: {out.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(config, items):
    slurm_items = [item for item in items if "slurm" in item.keywords]
    if slurm_items and (reason := cluster_unreachable()):
        for item in slurm_items:
            item.add_marker(pytest.mark.skip(reason=reason))
