"""Jobs on a real SLURM cluster (`make test-slurm` starts one on loopback), submitted the way a user does:
`python run.py -m hydra/launcher=slurm_cpu ...` through hydra-submitit-launcher."""
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
TINY = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1",
        "data.global_batch_size=32", "callbacks.progress.refresh_rate=0", "trainer.log_every_n_steps=1",
        "trainer.accelerator=cpu", "hydra.launcher.mem_gb=2"]

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
THREADS = {"OMP_NUM_THREADS": "1"}  # jobs and local reference runs sum floats in the same order (sbatch passes env)


def submit(sweep_dir: Path, *overrides: str, timeout: int = 600,
           base: tuple[str, ...] = ("experiment=digits_dmf", *TINY)) -> subprocess.CompletedProcess:
    """Blocks until every job of the sweep is done, as `python run.py -m` does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **THREADS}
    out = subprocess.run(
        [sys.executable, "run.py", "-m", "hydra/launcher=slurm_cpu", *base, f"hydra.sweep.dir={sweep_dir}", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + submitit_logs(sweep_dir, 2000)
    return out


def submitit_logs(sweep_dir: Path, tail: int | None = None) -> str:
    """The jobs' SLURM logs (each cut to its last `tail` characters, for assertion messages)."""
    return "".join(f"\n--- {p}\n{p.read_text()[-tail if tail else 0:]}" for p in sorted(sweep_dir.glob(".submitit/*/*_log.*")))


def job_dirs(sweep_dir: Path) -> list[Path]:
    found = sweep_dir.rglob(".hydra/overrides.yaml")
    return sorted(p.parent.parent for p in found if "config_history" not in p.parts)  # not the per-attempt copies


def logged_rows(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        rows += [r for r in csv.DictReader(open(path)) if r.get("train/loss")]
    return rows


def test_a_2x2_grid_runs_one_job_per_point_and_each_writes_its_results(tmp_path):
    start = time.time()
    submit(tmp_path, "guidance.omega=0.2,0.6", "time.P_mean_t=0.0,0.4", "trainer.max_steps=4",
           "hydra.launcher.cpus_per_task=1", "callbacks=with_eval", "callbacks.fid=null",
           "callbacks.sample_grid.steps=[1]", "callbacks.sample_grid.num_images=10",
           "+callbacks.stamp._target_=tests.launchers.sleep_each.StampFirstStep")
    dirs = job_dirs(tmp_path)
    assert len(dirs) == 4
    finals, points = set(), set()
    for d in dirs:
        rows = logged_rows(d)
        assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
        assert list((d / "samples").glob("*.png")), f"no sample grid in {d}"
        finals.add(rows[-1]["train/loss"])
        points.add(tuple(sorted((d / ".hydra" / "overrides.yaml").read_text().split())))
        assert torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    assert len(points) == 4 and len(finals) == 4  # four distinct sweep points, four distinct results
    first = sorted(float(t) - start for t in re.findall(r"\[first step\] ([\d.]+)", submitit_logs(tmp_path)))
    print(f"2x2 grid: first steps {[round(t, 1) for t in first]} s after submit; all done after "
          f"{time.time() - start:.1f} s")


def test_the_readme_sweep_with_the_default_sweep_dir_and_its_rerun_in_that_dir(tmp_path):
    """As the README types it (no hydra.sweep.dir, from the user's folder): jobs land in multirun/<experiment>/<date>/
    with their SLURM logs; the same command again with hydra.sweep.dir=<that folder> resumes each job in its folder
    (finished: nothing is trained or logged twice)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **THREADS}
    command = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/launcher=slurm_cpu", "experiment=digits_dmf",
               "debug=tiny", "model.depth=2", "model.dmf_depth=1", "hydra.launcher.cpus_per_task=1",
               "trainer.max_steps=2", "guidance.omega=0.2,0.6"]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "multirun" / "digits_dmf").iterdir()
    assert len(list(sweep_dir.glob(".submitit/*/*_log.out"))) == 2, submitit_logs(sweep_dir, 2000)
    out = subprocess.run([*command, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:] + submitit_logs(sweep_dir, 2000)
    dirs = job_dirs(sweep_dir)
    assert len(dirs) == 2
    for d, omega in zip(dirs, (0.2, 0.6)):
        assert f"guidance.omega={omega}" in (d / ".hydra" / "overrides.yaml").read_text()
        statuses = [p.read_text().split("\n")[0] for p in sorted(d.glob("config_history/attempt_*/status"))]
        assert statuses == ["accepted (start)", "nothing trained"]  # finished: the rerun trains and writes nothing
        assert [int(r["step"]) for r in logged_rows(d)] == [0, 1]
        ckpt = torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["global_step"] == 2 and ckpt["dmf_config"]["guidance"]["omega"] == omega


def test_eval_under_srun_n_2_gives_the_single_process_numbers(tmp_path):
    """docs/eval.md's `srun -n N python run.py mode=eval ...`: ranks and rendezvous from SLURM, same results."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **THREADS}
    train = subprocess.run([sys.executable, "run.py", "experiment=digits_dmf", "debug=tiny", "model.depth=2",
                            "model.dmf_depth=1", "trainer.max_steps=1", f"run_dir={tmp_path / 'train'}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    evaluate = [sys.executable, "run.py", "mode=eval", "experiment=digits_dmf", "debug=tiny", "model.depth=2",
                "model.dmf_depth=1", "eval=digits", f"ckpt={tmp_path / 'train' / 'checkpoints' / 'last.ckpt'}",
                "eval.steps=[1,2]", "eval.num_samples=100", "eval.batch_size=25"]
    results = {}
    for name, launch in (("one", []), ("srun", ["srun", "-n", "2", "-c", "1"])):
        out = subprocess.run([*launch, *evaluate, f"run_dir={tmp_path / name}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"over {2 if launch else 1} process(es)" in out.stdout + out.stderr
        with open(tmp_path / name / "eval" / "results.csv", newline="") as f:
            results[name] = [(r["steps"], float(r["fd_digits"]), r["class_acc"]) for r in csv.DictReader(f)]
    assert [r[0] for r in results["srun"]] == ["1", "2"]
    for (steps, fd, acc), (steps2, fd2, acc2) in zip(results["one"], results["srun"]):
        assert (steps, acc) == (steps2, acc2) and fd == pytest.approx(fd2, rel=1e-6)


def test_two_tasks_per_node_is_a_two_process_lightning_job(tmp_path):
    """tasks_per_node=2 alone makes Lightning's world size 2: trainer.devices follows the launcher, and a CPU preset's
    2 tasks are 2 CPU processes without trainer.accelerator=cpu (the preflight's no-GPU refusal is for local runs)."""
    submit(tmp_path, "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1", "trainer.max_steps=2",
           "trainer.accelerator=auto")
    logs = submitit_logs(tmp_path)
    assert "global batch 32 = 2 device(s) x 16 per device x 1 accumulation step(s)" in logs, logs[-3000:]
    assert "distributed_backend=gloo" in logs, logs
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs, logs
    (run_dir,) = job_dirs(tmp_path)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2


def test_a_paper_row_of_two_tasks_trains_its_stage_and_itself_in_step(tmp_path):
    """A row job's tasks are the ranks of its trainings: the stage and row folders are locked by rank 0 for the
    job (each task taking the lock itself deadlocked: the holder waited in DDP for the others, which waited for the
    lock), and rank 0 alone writes the row's result."""
    submit(tmp_path, "paper.row=dmf", f"paper.root={tmp_path}", "hydra.launcher.tasks_per_node=2",
           "hydra.launcher.cpus_per_task=1", "trainer.max_steps=2", "trainer.accelerator=auto",
           "hydra.launcher.mem_gb=2",
           base=("paper=digits_ablation", "debug=tiny"))
    logs = submitit_logs(tmp_path)
    assert logs.count("global batch 16 = 2 device(s) x 8 per device") == 2, logs[-3000:]  # the stage, then the row
    result = json.loads((tmp_path / "dmf" / "paper_row.json").read_text())
    assert sorted(result["ours"]) == ["1", "2"] and all(v > 0 for v in result["ours"].values()), result


def test_a_requeued_job_loses_no_step_and_ends_with_the_uninterrupted_weights(tmp_path):
    """SLURM sends USR2 once now + signal_delay_s + 30 s (its check period) passes the limit: with timeout_min=5 and
    signal_delay_s=140, 130-160 s into an attempt. The first attempt takes over 3 s per step (60 steps: it cannot
    finish), a resumed one runs at full speed (on a busy machine it may be signalled again: max_num_timeout=6)."""
    steps = 60  # 56 batches per epoch: the run also crosses an epoch boundary
    slow = ["+callbacks.slow._target_=tests.launchers.sleep_each.SlowUntilResumed", "+callbacks.slow.seconds=3"]
    start = time.time()
    submit(tmp_path / "sweep", f"trainer.max_steps={steps}", "hydra.launcher.timeout_min=5",
           "hydra.launcher.signal_delay_s=140", "hydra.launcher.max_num_timeout=6",
           "hydra.launcher.cpus_per_task=2", *slow, timeout=900)
    elapsed = time.time() - start
    (run_dir,) = job_dirs(tmp_path / "sweep")
    logs = submitit_logs(tmp_path / "sweep")
    assert "SIGUSR2 at step" in logs, submitit_logs(tmp_path / "sweep", 2000)  # the signal came, the checkpoint was written
    assert len(list((run_dir / "config_history").glob("attempt_*"))) >= 2  # the same run dir, resumed
    assert [int(r["step"]) for r in logged_rows(run_dir)] == list(range(steps))
    # the uninterrupted run, same overrides, in this process's environment
    ref = tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **THREADS}
    for name in [k for k in env if k.startswith("SLURM_")]:
        env.pop(name)
    out = subprocess.run([sys.executable, "run.py", "experiment=digits_dmf", *TINY[:-1], f"trainer.max_steps={steps}",
                          f"hydra.run.dir={ref}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    whole = torch.load(ref / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    timeline = re.findall(r"\[dmf\] SIGUSR2 at step \d+", logs)
    print(f"requeue: {elapsed:.0f} s from submit to the end; signals: {timeline}")
