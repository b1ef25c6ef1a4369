"""Every `python run.py ...` command in the READMEs and docs/ composes and validates as written (sweeps: every job of the
grid), so a renamed key or group breaks this test instead of a user's first command. Placeholders such as
<ckpt> or ... stand for whatever the user fills in; they are replaced by a plain word."""
import itertools
import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from dmf.config import validate, validate_typed
from tests.helpers import compose_config

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", ROOT / "launchers" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    found = []
    for doc in DOCS:
        for line in doc.read_text().replace("\\\n", " ").splitlines():
            found += [m.group(0).rstrip(".,;) ") for m in re.finditer(r"python run\.py[^`#\n]*", line)]
    return sorted(set(found))


def jobs(cmd: str) -> list[list[str]]:
    """The override lists of the jobs a command runs (one, or the grid of a -m sweep)."""
    words = shlex.split(re.sub(r"<[^>]*>", "placeholder", cmd))[2:]
    # "..." alone elides the rest of a command shown before; inside a value it is one more placeholder
    args = [a.replace("...", "placeholder") for a in words if a not in ("-m", "--multirun", "...")]
    if "--cfg" in args:
        args = args[: args.index("--cfg")]
    parsed = OverridesParser.create().parse_overrides(args)
    choices = [[o.input_line] if not o.is_sweep_override() else
               [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [list(combo) for combo in itertools.product(*choices)]


COMMANDS = readme_commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) > 20 and "python run.py" in COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_composes_and_validates(cmd, tmp_path):
    for overrides in jobs(cmd):
        cfg = compose_config([*overrides, f"run_dir={tmp_path}"])
        validate(cfg)
        validate_typed(cfg, overrides)  # a key typed where the mode would not read it is refused
