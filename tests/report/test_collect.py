"""mode=collect on hand-made job folders: one row per job and result, swept keys found, losses read, plots drawn.
(The real sweep through run.py: tests/pipelines/test_recipe.py.)"""
import csv
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dmf.config import ConfigError
from dmf.report.collect import collect, read_job
from tests.helpers import compose_config


def make_job(root: Path, overrides: list[str], fd: dict[int, float] | None, losses: list[float]) -> Path:
    job = root / ",".join(overrides)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    for steps, value in (fd or {}).items():  # what mode=eval writes
        (job / "eval" / f"euler_{steps}").mkdir(parents=True)
        (job / "eval" / f"euler_{steps}" / "result.json").write_text(json.dumps(
            {"sampler": "euler", "steps": steps, "num_samples": 10, "metrics": {"fid": value}}))
    (job / "logs" / "version_0").mkdir(parents=True)
    with open(job / "logs" / "version_0" / "metrics.csv", "w") as f:
        f.write("step,train/loss,lr\n" + "".join(f"{i},{v},0.1\n" for i, v in enumerate(losses)) + "9,,0.1\n")
    return job


def test_read_job_joins_overrides_results_and_last_losses(tmp_path):
    job = make_job(tmp_path, ["guidance.omega=0.6", "seed=1"], {1: 3.5, 2: 2.5}, [1.0, 0.5])
    record = read_job(job)
    assert record["overrides"] == {"guidance.omega": "0.6", "seed": "1"}
    assert [(r["sampler"], r["steps"], r["fid"]) for r in record["results"]] == [("euler", 1, 3.5), ("euler", 2, 2.5)]
    assert record["losses"] == {"train/loss": 0.5}  # the last logged value, not the empty trailing row


def test_collect_writes_one_row_per_job_and_result_and_a_plot_per_swept_key(tmp_path):
    for omega, fd in (("0.2", 4.0), ("0.6", 3.0)):
        for seed in ("0", "1"):
            make_job(tmp_path, [f"guidance.omega={omega}", f"seed={seed}", "trainer.max_steps=5"], {1: fd + int(seed)},
                     [float(seed)])
    out = collect(OmegaConf.create({"dir": str(tmp_path), "collect": {"metric": None}}))
    assert out["swept"] == ["guidance.omega", "seed"]  # trainer.max_steps is the same everywhere
    with open(tmp_path / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["guidance.omega"], r["seed"]): float(r["fid"]) for r in rows} == {
        ("0.2", "0"): 4.0, ("0.2", "1"): 5.0, ("0.6", "0"): 3.0, ("0.6", "1"): 4.0}
    assert {r["train/loss"] for r in rows} == {"0.0", "1.0"}
    assert [p.name for p in out["plots"]] == ["sweep_fid_vs_guidance.omega.png", "sweep_fid_vs_seed.png"]
    assert all(p.stat().st_size > 1000 for p in out["plots"])
    written = {p: p.read_bytes() for p in out["plots"]}
    again = collect(OmegaConf.create({"dir": str(tmp_path), "collect": {"metric": "train/loss"}}))
    assert [p.name for p in again["plots"]] == ["sweep_train_loss_vs_guidance.omega.png", "sweep_train_loss_vs_seed.png"]
    assert all(p.read_bytes() == data for p, data in written.items())  # another metric's plots are files of their own
    assert "| guidance.omega | seed |" in (tmp_path / "sweep.md").read_text()


def test_collect_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        collect(OmegaConf.create({"dir": str(tmp_path / "nope"), "collect": {"metric": None}}))
    with pytest.raises(ConfigError, match="no job folders"):
        collect(OmegaConf.create({"dir": str(tmp_path), "collect": {"metric": None}}))


def test_mode_collect_takes_a_sweep_folder_or_a_table(tmp_path):
    with pytest.raises(ConfigError, match="needs dir=multirun/<experiment>/<date> .* or paper=<table>"):
        collect(compose_config(["mode=collect"]))
    with pytest.raises(ConfigError, match="dir=<sweep folder> or paper=<table>, not both"):
        collect(compose_config(["mode=collect", f"dir={tmp_path}", "paper=main"]))
    cfg = compose_config(["mode=collect", "paper=main", f"paper.root={tmp_path}"])
    assert collect(cfg)["markdown"] == tmp_path / "main.md"  # every row "missing", and the table still written


def test_a_metric_that_no_row_has_is_refused_before_anything_is_rewritten(tmp_path):
    for omega in ("0.2", "0.6"):
        make_job(tmp_path, [f"guidance.omega={omega}"], {1: 3.0}, [1.0])
    collect(compose_config(["mode=collect", f"dir={tmp_path}"]))
    before = {p.name: p.read_bytes() for p in tmp_path.glob("sweep*")}
    with pytest.raises(ConfigError, match=r"collect.metric=fd_digits .* columns: .*'fid', 'train/loss'"):
        collect(compose_config(["mode=collect", f"dir={tmp_path}", "collect.metric=fd_digits"]))
    assert {p.name: p.read_bytes() for p in tmp_path.glob("sweep*")} == before  # the good plot is not replaced


def test_a_training_jobs_config_history_is_not_a_job(tmp_path):
    """mode=train keeps a copy of .hydra/ per attempt in <job>/config_history/attempt_NNN/ (tests/train)."""
    for omega in ("0.2", "0.6"):
        job = make_job(tmp_path, [f"guidance.omega={omega}"], None, [1.0])
        (job / "config_history" / "attempt_001").mkdir(parents=True)
        shutil.copytree(job / ".hydra", job / "config_history" / "attempt_001" / ".hydra")
    out = collect(compose_config(["mode=collect", f"dir={tmp_path}"]))
    assert [r["job"] for r in out["rows"]] == ["guidance.omega=0.2", "guidance.omega=0.6"]


def test_one_runs_folder_is_not_a_sweep(tmp_path):
    """dir=<a training run> held config_history/attempt_NNN/.hydra copies, which were collected as jobs."""
    job = make_job(tmp_path, ["trainer.max_steps=2"], None, [1.0]).rename(tmp_path / "run")
    (job / "config_history" / "attempt_001").mkdir(parents=True)
    shutil.copytree(job / ".hydra", job / "config_history" / "attempt_001" / ".hydra")
    with pytest.raises(ConfigError, match="it is one run's folder"):
        collect(compose_config(["mode=collect", f"dir={job}"]))
    assert not (job / "sweep.md").exists()
