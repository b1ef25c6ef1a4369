"""Resumes keep the run's history: immutable keys refuse, mutable keys are applied and listed, every attempt's config
is kept and the original never overwritten; periodic checkpoints need no quoting; CSV logs keep one row per step;
checkpoints say which architecture they hold."""
import csv

import pytest
import torch

from dmf.models import CheckpointMismatch
from dmf.train.entry import train
from dmf.train.resume_guard import ResumeConflict, compare, plain_config
from tests.helpers import compose_config

TINY = ["model.depth=2", "model.hidden_size=32", "model.num_heads=2", "data.global_batch_size=16",
        "callbacks.progress.refresh_rate=0", "model.dmf_depth=1", "trainer.log_every_n_steps=1"]


def run(tmp_path, *extra):
    return train(compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", *TINY, *extra]))


def attempts(tmp_path):
    return [(p / "status").read_text().split("\n")[0] for p in sorted((tmp_path / "config_history").iterdir())]


def test_resume_refuses_immutable_changes_and_keeps_the_record(tmp_path):
    run(tmp_path, "trainer.max_steps=2")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ResumeConflict, match=r"optim.lr: 0.0003 -> 0.5") as err:
        run(tmp_path, "trainer.max_steps=4", "optim.lr=0.5")
    assert "cannot change mid-run" in str(err.value) and "resume=null" in str(err.value)
    with pytest.raises(ResumeConflict, match=r"model.hidden_size: 32 -> 64"):
        run(tmp_path, "trainer.max_steps=4", "model.hidden_size=64")
    assert last.read_bytes() == before  # nothing was trained or saved
    assert attempts(tmp_path) == ["accepted (start)", "refused", "refused"]
    refused = (tmp_path / "config_history" / "attempt_002" / "config.yaml").read_text()
    assert "lr: 0.5" in refused  # every attempt's config is kept


def test_resume_applies_and_lists_mutable_changes(tmp_path, capsys):
    run(tmp_path, "trainer.max_steps=2")
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"weights of another network, which a resume would not read")
    # ckpt= of other weights on a resume was only said to be unused, and the run went on from its own
    with pytest.raises(ResumeConflict, match=r"ckpt: None -> '.*other.ckpt' .*To continue, drop ckpt=; to start from "
                                             r"it, use another run_dir"):
        run(tmp_path, "trainer.max_steps=3", f"ckpt={other}")
    module = run(tmp_path, "trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=7")
    assert module.trainer.global_step == 3
    out = capsys.readouterr().out
    assert "trainer.max_steps: 2 -> 3" in out and "callbacks.checkpoint.every_n_train_steps" in out
    assert attempts(tmp_path) == ["accepted (start)", "refused", "accepted (resume)"]
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["dmf_config"]["trainer"]["max_steps"] == 3 and saved["dmf_architecture"]["dmf_depth"] == 1


def test_a_moved_dataset_may_resume():
    """data.root is one of the keys a resume may change (docs/training.md); its copy in the datamodule moves with it."""
    base = ["experiment=dmf_xl_256", "ckpt=x", "run_dir=/runs/x"]  # resolvable, as in a run
    before = plain_config(compose_config([*base, "data.root=/data/a"]))
    frozen, changed = compare(before, plain_config(compose_config([*base, "data.root=/data/b", "data.on_error=skip"])))
    assert frozen == [] and any("data.datamodule.root" in line for line in changed)
    frozen, _ = compare(before, plain_config(compose_config([*base, "data.root=/data/a", "data.resolution=512"])))
    assert frozen  # the data itself still cannot change


def test_periodic_checkpoint_resumes_unquoted_and_csv_keeps_one_row_per_step(tmp_path):
    run(tmp_path, "trainer.max_steps=3", "callbacks.checkpoint.every_n_train_steps=2")
    periodic = tmp_path / "checkpoints" / "step_000002.ckpt"
    assert periodic.exists() and "=" not in periodic.name
    # as if killed after step 3: resume from the step-2 checkpoint, typed without quotes
    module = run(tmp_path, "trainer.max_steps=4", f"resume={periodic}")
    assert module.trainer.global_step == 4

    def steps(name="metrics.csv"):
        with open(tmp_path / "logs" / "version_0" / name) as f:
            return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_mf")]

    assert steps() == [0, 1, 2, 3]  # one file, one row per step over both attempts
    assert steps("metrics.superseded.csv") == [2]  # the discarded update's row is kept aside, not lost
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["version_0"]


def test_checkpoint_records_architecture_and_refuses_another(tmp_path):
    from dmf.build import build_network

    train(compose_config(["experiment=digits_dmf", f"run_dir={tmp_path}", *TINY, "model.depth=3", "model.dmf_depth=2",
                          "trainer.max_steps=1"]))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    base = ["experiment=digits_dmf", *TINY, "model.depth=3", f"ckpt={ckpt}"]
    build_network(compose_config([*base, "model.dmf_depth=2"]))  # the same architecture loads
    with pytest.raises(CheckpointMismatch, match=r"dmf_depth=2 \(config builds 1; set model.dmf_depth\)"):
        build_network(compose_config([*base, "model.dmf_depth=1"]))  # same tensors, other split: refused
    with pytest.raises(CheckpointMismatch, match=r"num_heads=2 \(config builds 4.* Fix: add model.num_heads=2, or"):
        build_network(compose_config([*base, "model.dmf_depth=2", "model.num_heads=4"]))
    # the overrides the message gives, pasted, load it
    build_network(compose_config([*base, "model.dmf_depth=2", "model.num_heads=4", "model.num_heads=2"]))


def test_another_runs_checkpoint_cannot_replace_this_runs_but_a_rollback_may(tmp_path, capsys):
    """resume=<another run's last.ckpt> into a run dir that holds its own run replaced that run's weights (and mixed
    the two runs' metrics); a periodic checkpoint of the run itself rolls it back, said."""
    from dmf.core.errors import ResultExistsError
    from dmf.train.entry import resume_path

    own = tmp_path / "run" / "checkpoints"
    own.mkdir(parents=True)
    (own / "last.ckpt").write_bytes(b"step 4")
    (own / "step_000002.ckpt").write_bytes(b"step 2")
    other = tmp_path / "other" / "checkpoints" / "last.ckpt"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another run")

    def resume(path):
        return resume_path(compose_config(["experiment=digits_dmf", f"run_dir={tmp_path / 'run'}", f"resume={path}"]))

    with pytest.raises(ResultExistsError, match="is not a checkpoint of this run.*run_dir=<new folder>"):
        resume(other)
    assert resume(own / "step_000002.ckpt") == str(own / "step_000002.ckpt")
    assert "rolling back" in capsys.readouterr().out
    assert resume(own / "last.ckpt") == str(own / "last.ckpt")
    assert (own / "last.ckpt").read_bytes() == b"step 4"


def test_a_resume_that_trains_nothing_leaves_the_checkpoint_as_it_is(tmp_path, capsys):
    """A lower trainer.max_steps trains nothing; saving anyway recorded max_steps=1 for a 2-step model."""
    run(tmp_path, "trainer.max_steps=2")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    for steps in (1, 2):  # below, and at, the run's step
        assert run(tmp_path, f"trainer.max_steps={steps}").trainer.global_step == 2
        assert "nothing to train: " in capsys.readouterr().out
        assert last.read_bytes() == before
    assert attempts(tmp_path) == ["accepted (start)", "nothing trained", "nothing trained"]  # not the run's record


def test_one_checkpoint_under_two_spellings_is_the_same_input(tmp_path, monkeypatch):
    """`python run.py` records Hydra's absolute paths; rerun as `python run.py run_dir=outputs/<date>` its stages
    name the same files relatively, and the DMF stage stopped: 'trained with other values ... ckpt: '/abs/...' ->
    'outputs/...''. A path to another file still differs."""
    from dmf.train.resume_guard import finished_differences

    (tmp_path / "flow.ckpt").write_bytes(b"flow")
    (tmp_path / "other.ckpt").write_bytes(b"other")
    first = compose_config(["experiment=digits_dmf", f"ckpt={tmp_path / 'flow.ckpt'}", f"run_dir={tmp_path}"])
    torch.save({"dmf_config": plain_config(first)}, tmp_path / "last.ckpt")
    monkeypatch.chdir(tmp_path)
    for spelling in ("flow.ckpt", f"{tmp_path}/../{tmp_path.name}/flow.ckpt"):
        again = compose_config(["experiment=digits_dmf", f"ckpt={spelling}", f"run_dir={tmp_path}"])
        assert finished_differences(tmp_path / "last.ckpt", again) == []
    other = compose_config(["experiment=digits_dmf", "ckpt=other.ckpt", f"run_dir={tmp_path}"])
    assert finished_differences(tmp_path / "last.ckpt", other) == [f"ckpt: '{tmp_path / 'flow.ckpt'}' -> 'other.ckpt'"]
