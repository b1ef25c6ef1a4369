"""The embedded default end to end, through the real CLI, with few steps."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmf.pipelines.digits import class_grid, markdown_table

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_default_pipeline_trains_both_stages_samples_and_writes_the_table(tmp_path):
    evaluate = "[{model:flow,name:flow_euler,steps:1},{model:dmf,name:euler,steps:1},{model:dmf,name:euler,steps:2}]"
    out = subprocess.run(
        [sys.executable, "run.py", "pipeline.flow.max_steps=30", "pipeline.dmf.max_steps=4",
         f"pipeline.evaluate={evaluate}", "callbacks.progress.refresh_rate=0", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    rows = re.findall(r"^\| (flow|dmf) \| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) % \|$", table, flags=re.M)
    assert [(r[0], r[1], r[2]) for r in rows] == [("flow", "flow_euler", "1"), ("dmf", "euler", "1"), ("dmf", "euler", "2")]
    assert all(float(r[3]) > 0 and 0 <= float(r[4]) <= 100 for r in rows)
    assert str(tmp_path / "results.md") in out.stdout
    for stage in ("flow", "dmf"):
        assert (tmp_path / stage / "checkpoints" / "last.ckpt").exists()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "dmf_euler_1.png", "dmf_euler_2.png", "flow_flow_euler_1.png"]


def test_class_grid_puts_one_class_per_row():
    labels = torch.tensor([1, 0, 1, 0, 2, 2])
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    grid = class_grid(images, labels, per_class=2)
    assert grid.shape == (6, 1, 32, 32)
    assert grid[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]


def test_markdown_table_formats_rows():
    table = markdown_table([{"model": "dmf", "sampler": "euler", "steps": 1, "fd": 2.256, "class_acc": 0.984}])
    assert table.splitlines()[-1] == "| dmf | euler | 1 | 2.26 | 98.4 % |"
