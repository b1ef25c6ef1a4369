import json
import subprocess
import sys

import numpy as np
import pytest

from dmf.core.files import atomic_path, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "stats.npz"
    np.savez(target, mu=np.zeros(3))
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            np.savez(tmp, mu=np.ones(3))
            raise RuntimeError("killed mid-write")
    assert np.load(target)["mu"].tolist() == [0.0, 0.0, 0.0]
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]


def test_the_temporary_keeps_the_suffix_so_np_savez_writes_where_it_is_told(tmp_path):
    target = tmp_path / "deep" / "samples.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".") and tmp.suffix == ".npz"
        np.savez(tmp, arr_0=np.arange(4))
    assert np.load(target)["arr_0"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in target.parent.iterdir()] == ["samples.npz"]


def test_json_replaces_whole(tmp_path):
    target = write_json_atomic(tmp_path / "r.json", {"fid": 2.16}, indent=1)
    write_json_atomic(target, {"fid": 1.51})
    assert json.loads(target.read_text()) == {"fid": 1.51}


def test_folder_lock_makes_a_second_process_wait(tmp_path):
    """Jobs of a sweep share stage folders: the second waits while the first trains or evaluates one."""
    code = ("import sys, time; from pathlib import Path; from dmf.core.files import folder_lock\n"
            "with folder_lock(Path(sys.argv[1])):\n"
            "    print(time.time(), flush=True); time.sleep(1.0); print(time.time(), flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "flow-abc")], text=True,
                              stdout=subprocess.PIPE) for _ in range(2)]
    spans = sorted(tuple(map(float, p.communicate(timeout=60)[0].split())) for p in procs)
    assert spans[1][0] >= spans[0][1], spans  # the second entered after the first left


def test_a_rank_other_than_zero_waits_for_its_own_rank_zero_not_for_the_lock(tmp_path, monkeypatch):
    """DDP ranks train in step: rank 0 holds the folder for its launch; rank 1 must not take the lock itself (it
    deadlocked: the holder waited in DDP for rank 1), nor go on while another launch holds the folder."""
    import threading

    from dmf.core.files import folder_lock
    from dmf.core.launch import launch_id

    for key, value in {"TORCHELASTIC_RUN_ID": "abc", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    folder = tmp_path / "flow-abc"
    folder.mkdir()
    (folder / ".lock.owner").write_text("torchrun other-launch restart 0 job 1 #1")
    entered = threading.Event()

    def rank_one():
        with folder_lock(folder):
            entered.set()

    thread = threading.Thread(target=rank_one, daemon=True)
    thread.start()
    assert not entered.wait(1.5)  # another launch holds it
    (folder / ".lock.owner").write_text(f"{launch_id()} #1")  # what this launch's rank 0 writes on taking it
    assert entered.wait(5)
    thread.join(5)


def test_a_follower_stops_when_its_rank_zero_never_comes_but_waits_while_another_job_works(tmp_path, monkeypatch):
    """Under srun a task that dies leaves the others running: a rank waiting for a rank 0 that never takes the lock
    would idle to the job's time limit. It waits as long as another job holds the folder, and stops once the
    folder has been free for the wait rank 0 gets to start (dmf.core.launch_time.WAIT)."""
    import fcntl
    import threading
    from datetime import timedelta

    from dmf.core import files

    for key, value in {"TORCHELASTIC_RUN_ID": "abc", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(files, "WAIT", timedelta(seconds=1.0))
    folder = tmp_path / "flow-abc"
    folder.mkdir()
    other_job = open(folder / ".lock", "w")
    fcntl.flock(other_job, fcntl.LOCK_EX)
    outcome = []

    def rank_one():
        try:
            with files.folder_lock(folder):
                outcome.append("entered")
        except RuntimeError as err:
            outcome.append(str(err))

    thread = threading.Thread(target=rank_one, daemon=True)
    thread.start()
    thread.join(3.0)
    assert outcome == []  # three times the wait, but another job holds the folder
    fcntl.flock(other_job, fcntl.LOCK_UN)
    other_job.close()
    thread.join(10)
    assert len(outcome) == 1 and "rank 0 of this launch has not taken the lock" in outcome[0], outcome


def test_an_atomic_file_gets_the_mode_of_any_new_file(tmp_path):
    """safetensors creates its file 0600: the exported last-ema.safetensors was private beside a 0644 last-ema.pt."""
    import os

    (tmp_path / "plain").write_bytes(b"x")
    with atomic_path(tmp_path / "written") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)
    assert (tmp_path / "written").stat().st_mode == (tmp_path / "plain").stat().st_mode
