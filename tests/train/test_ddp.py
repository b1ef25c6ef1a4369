"""Two CPU ranks through run.py (DDP, gloo), as a user starts them: each rank draws its own times, noise and
label drops; gradients are averaged, so the DDP step equals one process on the concatenated batch with the
same per-sample draws; every rank ends with the same weights."""
import pytest

from tests.train.two_ranks import DMF, assert_data_parallel_step, run_two_ranks, save_init


@pytest.mark.slow
def test_ddp_ranks_draw_independently_and_average_gradients(tmp_path):
    init = save_init(DMF, tmp_path / "init.pt")
    records = run_two_ranks(DMF, ["trainer.strategy=ddp"], init, tmp_path)
    assert_data_parallel_step(DMF, init, records)
