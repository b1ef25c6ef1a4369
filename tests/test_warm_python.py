"""The warm interpreter (tests/warm_python.py) runs a script as `python <script>` would: same argv, working
directory, run-time environment, streams, exit status and shutdown; a timeout ends it as subprocess.run's does."""
import os
import subprocess

import pytest

from tests.helpers import WarmPython, run_python

pytestmark = pytest.mark.skipif(bool(os.environ.get("DMF_TEST_COLD")), reason="DMF_TEST_COLD: no warm interpreter")

SCRIPT = """
import atexit, os, sys
atexit.register(lambda: print("atexit ran", flush=True))
print("argv", sys.argv[1:], "cwd", os.getcwd(), "PATH", os.environ["PATH"], "path0", sys.path[0], "name", __name__)
print("to stderr", file=sys.stderr)
print("parent", os.getppid(), file=sys.stderr)
if sys.argv[1] == "exit":
    sys.exit(3)
if sys.argv[1] == "raise":
    raise RuntimeError("boom")
if sys.argv[1] == "sleep":
    import time
    time.sleep(60)
"""


def both(script, *args, **kwargs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    warm = run_python(str(script), *args, **kwargs)
    os.environ["DMF_TEST_COLD"] = "1"
    try:
        cold = run_python(str(script), *args, **kwargs)
    finally:
        del os.environ["DMF_TEST_COLD"]
    return warm, cold


@pytest.mark.parametrize("how, code", [("end", 0), ("exit", 3), ("raise", 1)])
def test_a_script_runs_warm_as_in_a_new_python(tmp_path, monkeypatch, how, code):
    WarmPython.get()
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # as an in-process training sets it: read at run time, still warm
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    (tmp_path / "work").mkdir()
    warm, cold = both(script, how, "a=1", cwd=tmp_path / "work", env={"PATH": f"/nowhere:{os.environ['PATH']}"})
    server = WarmPython.get()
    assert server is not None and f"parent {server.proc.pid}" in warm.stderr  # it did run warm
    assert warm.returncode == cold.returncode == code
    assert warm.stdout == cold.stdout
    assert f"argv ['{how}', 'a=1'] cwd {tmp_path / 'work'} PATH /nowhere:" in warm.stdout
    assert f"path0 {tmp_path} name __main__" in warm.stdout and "atexit ran" in warm.stdout
    warm_err, cold_err = ([line for line in out.stderr.splitlines() if not line.startswith("parent")]
                          for out in (warm, cold))
    assert warm_err[0] == cold_err[0] == "to stderr"
    assert warm_err[-1] == cold_err[-1]  # e.g. RuntimeError: boom


def test_a_warm_script_that_runs_too_long_is_killed_with_subprocess_runs_error(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(str(script), "sleep", timeout=2)
    assert run_python(str(script), "end").returncode == 0  # the server goes on


def test_what_is_read_at_import_runs_in_a_new_python(tmp_path):
    """The server imported torch with this worker's environment: a variable read at import (TORCH_*,
    TRITON_INTERPRET, ...) that differs must start a new Python."""
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    out = run_python(str(script), "end", env={"TORCH_SHOW_CPP_STACKTRACES": "1"})
    assert out.returncode == 0 and f"parent {WarmPython.get().proc.pid}" not in out.stderr
