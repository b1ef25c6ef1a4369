"""bench/gpu_all.sh gets one try on a lent GPU, whose minutes are scarce: each benchmark command in it runs here on the
CPU with its flags exactly as written there plus flags for tiny sizes after them (argparse keeps the last), so a
renamed flag or a broken benchmark is found in CI, not on the card. Its `train` part, run.py with the step timer, is
tests/train/test_imagenet_front_door.py."""
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import ROOT, run_python

SCRIPT = (ROOT / "bench" / "gpu_all.sh").read_text().replace("\\\n", " ")
TINY = {
    "bench/attention_jvp.py": ["--lengths", "37", "--batch", "1", "--heads", "2", "--dtype", "float32", "--warmup", "1",
                               "--iters", "2"],
    "bench/dmf_step.py": ["--model", "DMFT-T/2", "--dmf-depth", "4", "--resolution", "16", "--batch", "2",
                          "--sample-batch", "4", "--warmup", "1", "--iters", "2"],
    "bench/decode_precision.py": ["--resolution", "32", "--batch", "2", "--iters", "1"],
    "bench/eval_throughput.py": ["--device", "cpu", "--model", "DMFT-T/2", "--resolution", "64", "--batch", "4",
                                 "--num-samples", "8", "--repeats", "1"],
}


def benchmark_commands() -> list[tuple[str, list[str]]]:
    """(part, [script, args...]) for each benchmark the script runs: its `part NAME LIMIT $PY bench/...` lines, and
    each `$EVAL ...` of the eval part with the loop's values."""
    commands, evaluate = [], None
    for line in SCRIPT.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].startswith("EVAL="):
            evaluate = shlex.split(words[0][len("EVAL="):])[1:]
        elif words[:1] == ["part"] and words[3:4] == ["$PY"] and words[4].startswith("bench/"):
            commands.append((words[1], words[4:]))
        elif words[:1] == ["part"] and words[1] == "eval":
            loop = re.search(r"for c in ([^;]+);", words[5]).group(1).split()
            for run in re.findall(r"\$EVAL ([^;&]+)", words[5]):
                for c in loop if "$c" in run else [""]:  # shlex keeps the backslash of the quoted \$c
                    commands.append(("eval", evaluate + shlex.split(run.replace("\\$c", c))))
    return commands


COMMANDS = benchmark_commands()


def test_every_part_of_the_script_is_run_here():
    parts = re.search(r"PARTS=\$\{PARTS:-([^}]+)\}", SCRIPT).group(1).split()
    assert {part for part, _ in COMMANDS} == set(parts) - {"tests", "train"}
    assert all(command[0] in TINY for _, command in COMMANDS), "a new benchmark script needs its tiny sizes in TINY"


@pytest.mark.slow
@pytest.mark.parametrize("part, command", COMMANDS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(COMMANDS)])
def test_a_gpu_benchmark_runs_as_written_at_tiny_sizes(part, command, tmp_path):
    script, *args = (w.replace("$RESULTS", str(tmp_path)).replace("$CARD", "cpu") for w in command)
    run_python(script, *args, *TINY[script], check=True, timeout=600)
    written = [p for p in tmp_path.iterdir() if p.suffix == ".md"]
    assert written and all("|" in p.read_text() for p in written), f"{part}: no results table in {tmp_path}"
    if part == "step":  # the script's last lines set the front door's img/s against this part's
        (tmp_path / "train_run_cpu.json").write_text('{"img_s": 1.0}')
        compare = re.search(r"<<'PYEOF'[^\n]*\n(.*?)\nPYEOF", SCRIPT, re.S).group(1)
        out = subprocess.run([sys.executable, "-", str(tmp_path / "train_run_cpu.json"),
                              str(tmp_path / "dmf_step_256_cpu.json")], input=compare, capture_output=True, text=True)
        assert re.match(r"run.py steady state 1.0 img/s vs bench/dmf_step.py auto:eager [\d.]+ img/s", out.stdout), out
