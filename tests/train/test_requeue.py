"""A run stopped by the pre-timeout signal and resumed equals the uninterrupted run, step for step."""
import csv
import os
from pathlib import Path

import pytest
import torch

from dmf.train.entry import train
from tests.helpers import compose_config

TINY = ["experiment=digits_dmf", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.dmf_depth=1",
        "data.global_batch_size=32", "callbacks.progress.refresh_rate=0", "trainer.log_every_n_steps=1"]


def run(run_dir: Path, *extra):
    return train(compose_config([*TINY, f"run_dir={run_dir}", *extra]))


def logged_steps(run_dir: Path) -> list[int]:
    steps = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        steps += [int(r["step"]) for r in csv.DictReader(open(path)) if r.get("train/loss")]
    return steps


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_signal_checkpoint_then_resume_equals_the_uninterrupted_run(tmp_path):
    run(tmp_path / "whole", "trainer.max_steps=6")
    signalled = tmp_path / "signalled"
    with pytest.raises(SystemExit, match="stopped on SIGUSR2"):
        run(signalled, "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=4",
            "+callbacks.signal._target_=tests.train.signal_at.SignalAt", "+callbacks.signal.step=3")
    # the signal came during step 2 (global_step 3 after it): the checkpoint holds steps 0..2 and nothing else
    assert torch.load(signalled / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    # ModelCheckpoint's own `last` (every 4 steps here) replaces that file rather than writing last-v1.ckpt
    module = run(signalled, "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=4")
    assert module.trainer.global_step == 6  # resume=auto: mid-epoch, same draws as the whole run
    assert sorted(p.name for p in (signalled / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert logged_steps(signalled) == list(range(6)) == logged_steps(tmp_path / "whole")
    whole, resumed = weights(tmp_path / "whole"), weights(signalled)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


@pytest.mark.slow
def test_a_kill_without_signal_resumes_from_the_rolling_checkpoint(tmp_path):
    """SIGKILL mid-run: nothing is written on the way out; the wall-time `last.ckpt` (here at every step) is resumed
    and the run still ends with the uninterrupted weights, losing only the steps since that checkpoint."""
    import subprocess
    import sys

    killed = tmp_path / "killed"
    out = subprocess.run(
        [sys.executable, "run.py", *TINY, "trainer.max_steps=6", "callbacks.rolling_last.every_minutes=1e-9",
         "+callbacks.kill._target_=tests.train.signal_at.SignalAt", "+callbacks.kill.step=4",
         "+callbacks.kill.signum=SIGKILL", f"hydra.run.dir={killed}"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})  # same float sums as this process
    assert out.returncode == -9, out.stderr[-2000:]
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3  # step 3's start
    run(killed, "trainer.max_steps=6")
    # rows reach metrics.csv as they are logged: the kill lost none the checkpoint covers, the resume appended the rest
    assert logged_steps(killed) == list(range(6)) and [p.name for p in (killed / "logs").iterdir()] == ["version_0"]
    run(tmp_path / "whole", "trainer.max_steps=6")
    whole, resumed = weights(tmp_path / "whole"), weights(killed)
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_rolling_last_by_wall_time(tmp_path, monkeypatch):
    import dmf.train.requeue as requeue

    steps = []
    save = requeue.save_last
    def recorded(trainer, d, at_step_start=True):  # (FinalLast's save at the last step's end is not RollingLast's)
        steps.extend([trainer.global_step] if at_step_start else [])
        return save(trainer, d, at_step_start)

    monkeypatch.setattr(requeue, "save_last", recorded)
    run(tmp_path, "trainer.max_steps=3", "callbacks.rolling_last.every_minutes=1e-9")
    assert steps == [1, 2]  # at the start of every step but the first (nothing to save yet)
    run(tmp_path / "off", "trainer.max_steps=2", "callbacks.rolling_last.every_minutes=null")
    assert steps == [1, 2]


def test_periodic_snapshots_keep_the_ema_weights_only_and_last_keeps_everything(tmp_path):
    from dmf.models import load_pretrained
    from tests.helpers import tiny_dmft

    run(tmp_path, "trainer.max_steps=4", "callbacks.checkpoint.every_n_train_steps=2", "callbacks.checkpoint.ema_only=true")
    ckpts = {p.name: torch.load(p, weights_only=False) for p in (tmp_path / "checkpoints").glob("*.ckpt")}
    snapshots = {name: c for name, c in ckpts.items() if not name.startswith("last")}
    assert len(snapshots) == 2 and "last.ckpt" in ckpts
    for c in snapshots.values():
        assert c["state_dict"] and all(k.startswith("ema_net.") for k in c["state_dict"])
        assert "optimizer_states" not in c
    last = ckpts["last.ckpt"]
    assert any(k.startswith("net.") for k in last["state_dict"]) and last["optimizer_states"]
    net = tiny_dmft(depth=2, hidden_size=32, num_heads=2, dmf_depth=1)  # the TINY model above
    path = tmp_path / "checkpoints" / sorted(snapshots)[-1]
    assert load_pretrained(net, path) == {"dropped": [], "initialised": []}


@pytest.mark.slow
def test_a_run_ended_at_an_epoch_end_resumes_with_the_whole_next_epoch(tmp_path):
    """Ended by trainer.max_epochs, last.ckpt is written after fit(): the resumed run reads all of the next epoch."""
    epochs = ["data.global_batch_size=256", "trainer.max_steps=-1"]  # 1,797 digits: 7 steps per epoch
    run(tmp_path / "split", *epochs, "+trainer.max_epochs=1")
    module = run(tmp_path / "split", *epochs, "+trainer.max_epochs=2")
    assert module.trainer.global_step == 14
    run(tmp_path / "whole", *epochs, "+trainer.max_epochs=2")
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "split")
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


@pytest.mark.slow
def test_a_run_ended_by_max_steps_on_a_snapshot_step_resumes_mid_epoch_exactly(tmp_path):
    """max_steps=3 with a snapshot every 3 steps: last.ckpt is the step's end, not the cut-short epoch's end (after
    which a resumed run would start the next epoch's data order early)."""
    batch = ["data.global_batch_size=256", "callbacks.checkpoint.every_n_train_steps=3"]  # 7 steps per epoch
    run(tmp_path / "split", *batch, "trainer.max_steps=3")
    assert torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    run(tmp_path / "split", *batch, "trainer.max_steps=9")
    run(tmp_path / "whole", *batch, "trainer.max_steps=9")
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "split")
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_a_requeued_job_started_with_resume_path_continues_its_own_progress(tmp_path, monkeypatch):
    """A requeued SLURM job reruns its original command; resume=<where it started> would restart it from there
    each time, losing everything since. Its own last.ckpt wins then, and only then."""
    from dmf.train.entry import resume_path

    start = tmp_path / "start.ckpt"
    start.write_bytes(b"x")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_config([*TINY, f"run_dir={tmp_path / 'run'}", f"resume={start}"])
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resume_path(cfg) == str(start)  # the first start: what the user asked for
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")  # the job's progress, then SLURM requeues it
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume_path(cfg) == str(last)


@pytest.mark.slow
def test_resume_auto_without_last_ckpt_continues_from_the_latest_snapshot(tmp_path):
    """A stop before the first last.ckpt (or a deleted one) leaves periodic snapshots only: resume=auto continues
    from the latest, ending with the uninterrupted weights, instead of a new run written beside them as step_N-v1."""
    run(tmp_path / "cut", "trainer.max_steps=4", "callbacks.checkpoint.every_n_train_steps=2")
    checkpoints = tmp_path / "cut" / "checkpoints"
    (checkpoints / "last.ckpt").unlink()
    (checkpoints / "step_000002.ckpt").write_bytes(b"PK")  # an older snapshot cut short by a kill: passed over
    module = run(tmp_path / "cut", "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=2")
    assert module.trainer.global_step == 6
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "step_000002.ckpt", "step_000004.ckpt",
                                                             "step_000006.ckpt"]
    run(tmp_path / "whole", "trainer.max_steps=6")
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    # a snapshot at trainer.max_steps (killed before its last.ckpt): nothing to train, and last.ckpt is that state,
    # which pipelines and paper rows read
    (checkpoints / "last.ckpt").unlink()
    run(tmp_path / "cut", "trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=2")
    assert (checkpoints / "last.ckpt").read_bytes() == (checkpoints / "step_000006.ckpt").read_bytes()


def test_a_rollback_sets_the_later_checkpoints_aside(tmp_path, capsys):
    """resume=<run>/checkpoints/step_000002.ckpt in a run at step 4: last.ckpt (step 4) was overwritten by the
    rolled-back run's, and the redone steps' snapshots were written beside the old ones (step_000004-v1.ckpt); a stop
    before the new last.ckpt then resumed the abandoned step_000004.ckpt. The later files are now moved, kept. A copy
    kept outside checkpoints/ was refused as another run's."""
    every = "callbacks.checkpoint.every_n_train_steps=2"
    run(tmp_path, "trainer.max_steps=4", every)
    checkpoints = tmp_path / "checkpoints"
    before = {name: (checkpoints / name).read_bytes() for name in ("last.ckpt", "step_000004.ckpt")}
    first = weights(tmp_path)
    module = run(tmp_path, "trainer.max_steps=4", every, f"resume={checkpoints / 'step_000002.ckpt'}")
    assert module.trainer.global_step == 4
    assert "moved, kept, to" in capsys.readouterr().out
    [aside] = checkpoints.glob("superseded-*")
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == before
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt", "step_000002.ckpt", "step_000004.ckpt"]
    redone = weights(tmp_path)
    for key in first:  # the same steps redone: the same weights
        assert torch.equal(first[key], redone[key]), key
    run(tmp_path, "trainer.max_steps=4", every)  # resume=auto from last.ckpt: nothing is later, nothing moves
    assert len(list(checkpoints.glob("superseded-*"))) == 1
    # a copy of the run's own checkpoint kept outside checkpoints/ records this run dir: it may roll the run back
    from dmf.train.entry import resume_path
    backup = tmp_path.parent / "backup.ckpt"
    backup.write_bytes((checkpoints / "step_000002.ckpt").read_bytes())
    assert resume_path(compose_config([*TINY, f"run_dir={tmp_path}", f"resume={backup}"])) == str(backup)


def test_a_new_start_beside_an_earlier_runs_snapshots_is_refused(tmp_path):
    """Without last.ckpt, a new start (resume=null, another run's resume=, or resume=auto with only EMA-only
    snapshots) would write its step_N-v1.ckpt beside the earlier run's: one folder, two runs."""
    from dmf.core.errors import ResultExistsError
    from dmf.train.entry import resume_path

    run(tmp_path / "ema", "trainer.max_steps=2", "callbacks.checkpoint.every_n_train_steps=2",
        "callbacks.checkpoint.ema_only=true")
    last = tmp_path / "ema" / "checkpoints" / "last.ckpt"
    other = torch.load(last, weights_only=False)
    other["dmf_config"]["run_dir"] = str(tmp_path / "other")  # another run's checkpoint
    torch.save(other, tmp_path / "elsewhere.ckpt")
    last.unlink()
    for resume, message in (("auto", "none of them resumes it"), ("null", "would replace or mix with"),
                            (str(tmp_path / "elsewhere.ckpt"), "not a checkpoint of this run")):
        with pytest.raises(ResultExistsError, match=message):
            resume_path(compose_config([*TINY, f"run_dir={tmp_path / 'ema'}", f"resume={resume}"]))
