"""A run's history of launches: numbered attempts, and the record a failed or refused launch puts back."""
from dmf.core.run_history import attempts, mark_last_attempt, record_attempt, restore_launch_record


def launch(run_dir, overrides: str, status: str):
    """What Hydra does at each launch (rewrite .hydra), then what the resume check records."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(overrides)
    return record_attempt(run_dir, {"seed": 0}, status, None)


def test_an_attempt_that_failed_before_training_is_not_the_runs_record(tmp_path):
    launch(tmp_path, "- trainer.max_steps=1", "accepted (start)")
    launch(tmp_path, "- trainer.max_steps=2", "accepted (resume)")
    mark_last_attempt(tmp_path, "failed before training")  # e.g. the data moved to a folder that is no dataset
    restore_launch_record(tmp_path)
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == "- trainer.max_steps=1"
    status = (attempts(tmp_path)[-1] / "status").read_text().split("\n")
    assert status[0] == "failed before training" and status[1] == "resumed_from: None"


def test_attempts_are_numbered_past_a_thousand(tmp_path):
    (tmp_path / "config_history" / "attempt_999").mkdir(parents=True)
    assert launch(tmp_path, "", "accepted (start)").name == "attempt_1000"
    assert [p.name for p in attempts(tmp_path)] == ["attempt_999", "attempt_1000"]


def test_a_record_already_in_place_is_left_untouched(tmp_path):
    """Every task of a SLURM job runs the pickled job, and two of them replacing .hydra at once collided
    (`Directory not empty`): a record that is already the accepted one is not rewritten."""
    launch(tmp_path, "- trainer.max_steps=1", "accepted (start)")
    inode = (tmp_path / ".hydra").stat().st_ino
    restore_launch_record(tmp_path)
    assert (tmp_path / ".hydra").stat().st_ino == inode
