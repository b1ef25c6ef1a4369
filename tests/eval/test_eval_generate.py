"""Generation: image i depends only on (seed, i) — same images for any batch size, chunking, world size, and a
resumed run equals an uninterrupted one."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dmf.data.vae import IdentityVAE
from dmf.eval.dist import DistInfo
from dmf.eval.generation.writers import NpzWriter, PngWriter
from dmf.eval.generation.loop import Plan, Renderer, run
from dmf.eval.generation.seeding import index_inputs
from dmf.sampling import build_sampler
from tests.eval.eval_helpers import pixel_scorer, tiny_net

N = 30


class Capture:
    """A writer that keeps every image by index."""

    def __init__(self):
        self.images = {}

    def write(self, indices, images, labels):
        for i, img, y in zip(indices.tolist(), images, labels.tolist()):
            assert i not in self.images, f"index {i} generated twice"
            self.images[i] = (img.clone(), y)

    def end_chunk(self, c):
        pass

    def finalize(self, plan):
        pass


def generate(batch_size, chunk_size=10, sampler="euler", steps=1, work_dir=None, writers=(), render=None):
    plan = Plan(N, 3, (1, 8, 8), 10, batch_size=batch_size, chunk_size=chunk_size, feature_batch_size=3)
    render = render or Renderer(tiny_net(), build_sampler(sampler, steps=steps), IdentityVAE(), "cpu")
    cap = Capture()
    scorer = pixel_scorer()
    out = run(plan, render, scorer, work_dir=work_dir, fingerprint={"test": 1}, writers=[cap, *writers],
              checkpoint_every_s=0.0, log=lambda m: None)
    return cap, out.states, scorer


def assert_same_states(a, b, scorer):
    da, db = scorer.states_to_dict(a), scorer.states_to_dict(b)
    for name in da:
        for key in da[name]:
            np.testing.assert_allclose(np.asarray(da[name][key], dtype=float), np.asarray(db[name][key], dtype=float),
                                       rtol=1e-12, atol=1e-12, err_msg=f"{name}.{key}")


def test_inputs_depend_only_on_seed_and_index():
    a = index_inputs(7, torch.arange(10), (1, 4, 4), 10, step_noises=2)
    b = index_inputs(7, torch.arange(5, 10), (1, 4, 4), 10, step_noises=2)
    torch.testing.assert_close(a[0][5:], b[0])
    assert a[1][5:].tolist() == b[1].tolist() and a[1].max() < 10
    torch.testing.assert_close(a[2][:, 5:], b[2])
    assert not torch.equal(index_inputs(8, torch.arange(10), (1, 4, 4), 10)[0], a[0])
    assert index_inputs(7, torch.arange(20), (1, 4, 4), 10, labels="balanced")[1].tolist() == [i % 10 for i in range(20)]


@pytest.mark.parametrize("sampler,steps", [("euler", 1), ("restart", 2)])
def test_batch_size_and_chunking_change_images_only_by_float_rounding(sampler, steps):
    """The network sees other batches, so its float32 output may differ in the last bits (by CPU and thread
    count); after uint8 quantisation an image is the same or, rarely, one level off."""
    a, _, _ = generate(batch_size=4, chunk_size=10, sampler=sampler, steps=steps)
    b, _, _ = generate(batch_size=7, chunk_size=16, sampler=sampler, steps=steps)
    assert sorted(a.images) == list(range(N)) == sorted(b.images)
    diffs = torch.stack([(a.images[i][0].int() - b.images[i][0].int()).abs() for i in range(N)])
    assert diffs.max() <= 1 and (diffs > 0).float().mean() < 1e-2
    assert all(a.images[i][1] == b.images[i][1] for i in range(N))


class IndexImages:
    """A renderer whose image i is a fixed function of (seed, i): the statistics test sees identical images."""

    def __call__(self, plan, indices):
        noise, y, _ = index_inputs(plan.seed, indices, (3, 8, 8), plan.num_classes)
        return (noise * 60 + 128).clamp(0, 255).to(torch.uint8), y


def test_statistics_of_the_same_images_do_not_depend_on_the_render_batch():
    """Features are computed in fixed groups counted from each chunk's start, so the float32 feature pass sees
    the same batches whatever eval.batch_size (and, chunks going to processes whole, the process count)."""
    _, sa, scorer = generate(batch_size=4, chunk_size=10, render=IndexImages())
    _, sb, _ = generate(batch_size=7, chunk_size=10, render=IndexImages())
    assert_same_states(sa, sb, scorer)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30])
def test_feature_passes_are_the_same_groups_for_any_render_batch(batch_size):
    """The mechanism itself, independent of whether this CPU's kernels happen to be batch-invariant."""
    seen = []

    class Groups:
        def new_states(self):
            return {}

        def states_to_dict(self, states):
            return {}

        def states_from_dict(self, d):
            return {}

        def merge(self, into, other):
            return into

        def update(self, states, images, labels, indices):
            seen.append(indices.tolist())

    plan = Plan(N, 3, (1, 8, 8), 10, batch_size=batch_size, chunk_size=10, feature_batch_size=4)
    run(plan, IndexImages(), Groups(), log=lambda m: None)
    assert seen == [list(range(c, min(c + 4, (c // 10 + 1) * 10))) for s in (0, 10, 20) for c in range(s, s + 10, 4)]


class Interrupt(Exception):
    pass


def test_resumed_run_equals_uninterrupted(tmp_path):
    full, full_states, scorer = generate(batch_size=5, work_dir=tmp_path / "full")
    calls = {"n": 0}
    inner = Renderer(tiny_net(), build_sampler("euler", steps=1), IdentityVAE(), "cpu")

    def flaky(plan, idx):
        calls["n"] += 1
        if calls["n"] == 5:  # dies inside chunk 2 (batches of 5, chunks of 10): chunks 0, 1 were saved
            raise Interrupt
        return inner(plan, idx)

    with pytest.raises(Interrupt):
        generate(batch_size=5, work_dir=tmp_path / "resume", render=flaky,
                 writers=[PngWriter(tmp_path / "resume" / "png"), NpzWriter(tmp_path / "resume")])
    assert len(list((tmp_path / "resume" / "partial").glob("state_a001_*.pt"))) == 1
    second, states, _ = generate(batch_size=5, work_dir=tmp_path / "resume",
                                 writers=[PngWriter(tmp_path / "resume" / "png"), NpzWriter(tmp_path / "resume")])
    assert sorted(second.images) == list(range(20, N))  # only what was missing, nothing twice
    assert_same_states(states, full_states, scorer)
    assert len(list((tmp_path / "resume" / "png").glob("*.png"))) == N
    with np.load(tmp_path / "resume" / f"samples_{N}x8x8x3.npz") as z:
        assert z["arr_0"].shape == (N, 8, 8, 3)
        for i in (0, 19, 20, N - 1):
            np.testing.assert_array_equal(z["arr_0"][i], full.images[i][0].permute(1, 2, 0).numpy())
            assert z["arr_1"][i] == full.images[i][1]


def test_resume_refuses_other_settings(tmp_path):
    generate(batch_size=5, work_dir=tmp_path)
    plan = Plan(N, 4, (1, 8, 8), 10, batch_size=5, chunk_size=10)  # another seed
    render = Renderer(tiny_net(), build_sampler("euler", steps=1), IdentityVAE(), "cpu")
    with pytest.raises(FileExistsError, match="eval.overwrite=true"):
        run(plan, render, pixel_scorer(), work_dir=tmp_path, fingerprint={"test": 2}, log=lambda m: None)


def _worker(rank, world, port, out_dir, result_file):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from dmf.eval.dist import init_distributed, shutdown

    info = init_distributed("cpu")
    assert info.world_size == world and info.owns_group
    pngs = PngWriter(os.path.join(out_dir, "png"))
    _, states, scorer = generate(batch_size=4, work_dir=out_dir, writers=[pngs])
    if info.is_main:
        torch.save(scorer.states_to_dict(states), result_file)
    shutdown(info)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    single, single_states, scorer = generate(batch_size=4, work_dir=tmp_path / "one",
                                             writers=[PngWriter(tmp_path / "one" / "png")])
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path / "two"), str(tmp_path / "two.pt")), nprocs=2,
                       join=True, start_method="spawn")
    two = scorer.states_from_dict(torch.load(tmp_path / "two.pt", weights_only=False))
    assert_same_states(two, single_states, scorer)
    files = sorted(p.name for p in (tmp_path / "two" / "png").glob("*.png"))
    assert files == [f"{i:06d}.png" for i in range(N)]
    for name in files:
        assert (tmp_path / "two" / "png" / name).read_bytes() == (tmp_path / "one" / "png" / name).read_bytes()
    ranks = {p.name for p in (tmp_path / "two" / "partial").glob("state_*.pt")}
    assert ranks == {"state_a001_r0000.pt", "state_a001_r0001.pt"}


def test_world_size_from_env(monkeypatch):
    from dmf.eval.dist import init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.owns_group) == (0, 1, False)
    assert isinstance(info, DistInfo)
