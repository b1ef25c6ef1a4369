"""Evaluation messages: rate and ETA from the progress reporter; through `logging` into the run's run.log."""
import subprocess
import sys
from pathlib import Path

import torch

from dmf.eval.progress import Progress
from tests.eval.eval_helpers import PIXEL_OVERRIDES, TINY_MODEL, tiny_net

REPO = Path(__file__).resolve().parents[2]


def test_progress_reports_rate_and_eta_at_most_every_interval():
    now, said = [0.0], []
    p = Progress("euler_1", 1000, every_s=30, scale=2, emit=said.append, clock=lambda: now[0])
    now[0] = 10.0
    p.update(100)  # too soon: nothing
    now[0] = 40.0
    p.update(200)  # 2 processes x 200 = 400 of 1000 in 40 s: 10 img/s, 60 s left
    now[0] = 50.0
    p.update(250)
    assert said == ["euler_1: 400/1000 images (40%), 10.0 images/s, ETA 1m00s"]
    stream = Progress("reference statistics", None, every_s=0, emit=said.append, clock=lambda: now[0])
    now[0] = 60.0
    stream.update(50)
    assert said[-1] == "reference statistics: 50 images, 5.0 images/s"


def test_mode_eval_messages_reach_run_log(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save({"ema": tiny_net().state_dict()}, ckpt)
    cmd = [sys.executable, "run.py", "mode=eval", "eval=digits", f"hydra.run.dir={tmp_path / 'run'}", f"ckpt={ckpt}",
           *TINY_MODEL, *PIXEL_OVERRIDES, "eval.metrics=[fd_pix]", "eval.num_samples=16", "eval.batch_size=16",
           "eval.chunk_size=16", "eval.grid_size=0", "eval.device=cpu"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = list((tmp_path / "run").rglob("run.log"))
    assert logs, f"no run.log under {tmp_path / 'run'}"
    text = logs[0].read_text()
    assert "[dmf.eval]" in text and "euler_1: fd_pix=" in text
