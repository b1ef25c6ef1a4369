"""EpochSampler: one order per (seed, epoch), split over ranks, resumable at a position counted over all ranks."""
from dmf.data.epoch_sampler import EpochSampler


def streams(n, world, seed=0, epoch=0, skip=0):
    out = []
    for rank in range(world):
        s = EpochSampler(n, seed, rank, world)
        s.set_epoch(epoch)
        s.skip_once(skip)
        out.append(list(s))
    return out


def test_ranks_split_one_epoch_order_into_equal_disjoint_parts():
    (whole,) = streams(11, 1)
    a, b = streams(11, 2)
    assert sorted(whole) == list(range(11)) and len(a) == len(b) == len(EpochSampler(11, 0, 1, 2)) == 5
    assert not set(a) & set(b) and sorted(a + b) == sorted(whole[:10])  # whole rounds only
    assert streams(11, 2) == [a, b] and streams(11, 2, epoch=1) != [a, b]  # a function of (seed, epoch)


def test_a_seed_sweep_does_not_share_orders_shifted_by_an_epoch():
    """Seeded with seed + epoch, seed 0's second epoch was seed 1's first: a seed=0,1 sweep saw the same data."""
    firsts = {seed: streams(50, 1, seed=seed)[0] for seed in range(4)}
    for seed in range(3):
        assert streams(50, 1, seed=seed, epoch=1)[0] != firsts[seed + 1]


def test_a_skip_continues_each_ranks_own_stream_and_applies_once():
    batch, world = 2, 3
    full = streams(20, world)
    done = 2  # batches each rank finished before the stop
    resumed = streams(20, world, skip=done * batch * world)
    assert resumed == [s[done * batch:] for s in full]
    s = EpochSampler(20, 0, 0, world)
    s.skip_once(6)
    assert len(list(s)) == 4 and len(list(s)) == 6  # the next pass is whole again


def test_another_world_size_resumes_with_the_samples_not_yet_seen():
    (whole,) = streams(20, 1)
    seen = set(whole[:8])  # one process stopped after 8 samples
    a, b = streams(20, 2, skip=8)
    assert not (set(a) | set(b)) & seen and len(a) == len(b) == 6 and sorted(a + b) == sorted(set(whole) - seen)


def test_each_ranks_epoch_is_whole_optimizer_steps():
    """group = batch per device x accumulation: Lightning would step on the tail of an epoch mid-accumulation."""
    for world, group in ((1, 300), (2, 64 * 3), (3, 7)):
        parts = [list(EpochSampler(1797, 0, rank, world, group=group)) for rank in range(world)]
        per_rank = 1797 // world // group * group
        assert all(len(p) == per_rank == len(EpochSampler(1797, 0, r, world, group=group)) for r, p in enumerate(parts))
        assert len(set().union(*map(set, parts))) == per_rank * world  # disjoint
        assert parts[0] == streams(1797, world)[0][:per_rank]  # the same order, its tail cut
