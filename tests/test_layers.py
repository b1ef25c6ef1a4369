"""Imports only go down the layers (DESIGN.md section 2): a package may import itself and the layers below it,
never one above. Read from the source, so a lazy import inside a function counts too."""
import ast
from pathlib import Path

DMF = Path(__file__).parents[1] / "dmf"
# top to bottom; names on one line are one layer (they never import each other)
LAYERS = [
    ("report",),                       # mode=collect: a sweep's table, or a paper table (through dmf/paper)
    ("paper", "pipelines"),            # recipes over the modes
    ("train",),                        # Lightning wiring, entry points
    ("digits",),                       # the embedded task: data, classifier, features, REPA stand-in encoder
    ("eval",),
    ("build",),                        # the one builder: config -> network, objective, sampler, decoder
    ("config", "command_line"),        # validation of composed configs; run.py's rules for the command line
    ("objectives",),
    ("sampling",),
    ("data",),
    ("models",),
    ("kernels",),
    ("core",),                         # paths, seeds, ranks, errors: shared by everything
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def imported_packages(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "dmf" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_package_has_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in DMF.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert packages == set(RANK), f"add to LAYERS: {packages - set(RANK)}; gone: {set(RANK) - packages}"


def test_imports_only_go_down():
    upward = []
    for path in DMF.rglob("*.py"):
        rel = path.relative_to(DMF)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if own == "__init__":
            continue
        for line, target in imported_packages(path):
            if target in RANK and (RANK[target] < RANK[own] or (RANK[target] == RANK[own] and target != own)):
                upward.append(f"dmf/{rel}:{line} ({own}) imports dmf.{target}")
    assert not upward, "imports going up a layer or across one:\n" + "\n".join(upward)
