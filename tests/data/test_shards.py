"""Webdataset shards under simulated DDP: 2 ranks x 2 DataLoader workers; exact passes cover every sample
once, resampled epochs are equal-length per rank (no hang), seeded by (seed, epoch); bad members are named."""
import io
import tarfile

import pytest
import torch
from torch.utils.data import DataLoader

from dmf.data import layout as L
from dmf.data.errors import DataError
from dmf.data.shards import ShardDataset
from tests.data.data_helpers import write_key_shards

COUNTS = (5, 3, 7, 1, 4, 6)  # uneven on purpose: 26 samples


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_key_shards(tmp_path_factory.mktemp("shards"), COUNTS)


def run_rank(urls, rank, *, epoch=0, workers=2, **kw):
    """One rank's epoch through a real DataLoader with worker processes: [(key, label), ...]."""
    args = dict(scale=1.0, seed=3, rank=rank, world_size=2, num_workers=workers, shuffle_buffer=4)
    args.update(kw)
    ds = ShardDataset(urls, **args)
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, timeout=60 if workers else 0)
    return [(int(x[0, 0, 0].item()), y) for x, y in loader]


def test_exact_pass_covers_every_sample_once_per_epoch(shards):
    urls, keys = shards
    orders = []
    for epoch in (0, 1):
        seen = run_rank(urls, 0, epoch=epoch, resampled=False) + run_rank(urls, 1, epoch=epoch, resampled=False)
        assert sorted(k for k, _ in seen) == keys  # all 26, none twice, over 2 ranks x 2 workers
        assert all(label == k % 5 for k, label in seen)
        orders.append([k for k, _ in seen])
    assert orders[0] != orders[1]  # reshuffled per epoch


def test_resampled_epochs_have_equal_length_per_rank_and_are_seeded(shards):
    urls, _ = shards
    kw = dict(resampled=True, num_samples=26, batch_size=4)
    r0, r1 = run_rank(urls, 0, **kw), run_rank(urls, 1, **kw)
    ds = ShardDataset(urls, 1.0, rank=0, world_size=2, num_workers=2, **kw)
    # ceil(26 / 2 ranks / 2 workers) = 7 -> 8 (whole batches of 4) per worker -> 16 per rank
    assert len(r0) == len(r1) == len(ds) == 16
    assert r0 != r1  # ranks draw their own shards
    assert run_rank(urls, 0, **kw) == r0  # same seed and epoch: same stream
    assert run_rank(urls, 0, epoch=1, **kw) != r0
    assert run_rank(urls, 0, seed=4, **kw) != r0


def test_persistent_workers_count_epochs_like_fresh_ones(shards):
    urls, _ = shards
    kw = dict(scale=1.0, seed=3, rank=0, world_size=1, num_workers=0, resampled=True, num_samples=6,
              shuffle_buffer=4)
    fresh = []
    for epoch in range(2):
        ds = ShardDataset(urls, **kw)
        ds.set_epoch(epoch)
        fresh.append([int(x[0, 0, 0]) for x, _ in ds])
    ds = ShardDataset(urls, **kw)  # one object iterated twice, as a persistent worker does
    assert [[int(x[0, 0, 0]) for x, _ in ds] for _ in range(2)] == fresh


def test_posterior_is_sampled_on_every_fetch(tmp_path):
    import numpy as np

    moments = np.concatenate([np.full((4, 2, 2), 2.0, np.float32), np.full((4, 2, 2), 0.5, np.float32)])
    L.write_shard(tmp_path / "s.tar", [(i, moments, 0) for i in range(200)])
    ds = ShardDataset([str(tmp_path / "s.tar")], scale=0.5, resampled=False, shuffle_buffer=1)
    x = torch.stack([x for x, _ in ds])
    assert x.shape == (200, 4, 2, 2) and len({tuple(v.flatten().tolist()) for v in x}) == 200
    assert abs(x.mean().item() - 1.0) < 0.05 and abs(x.std().item() - 0.25) < 0.03  # (2 + 0.5 e) * 0.5


def _corrupt_member(src, dst, key, payload):
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            if m.name == f"{key}.moments.npy":
                data = payload(data)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


@pytest.mark.parametrize("payload,message", [
    (lambda d: d[:70], "cannot read the .npy"),  # truncated array
    (lambda d: d.replace(b"(2, 2, 2)", b"(2, 1, 4)"), "expects"),  # shape mismatch
])
def test_bad_member_is_named_or_skipped_and_counted(shards, tmp_path, payload, message):
    urls, _ = shards
    bad = tmp_path / "bad.tar"
    _corrupt_member(urls[1], bad, "00000006", payload)  # shard 1 holds keys 5, 6, 7
    ds = ShardDataset([str(bad)], 1.0, resampled=False, latent_channels=1, latent_size=2, shuffle_buffer=1)
    with pytest.raises(DataError, match=rf"bad\.tar: sample 00000006: .*{message}"):
        list(ds)
    ds = ShardDataset([str(bad)], 1.0, resampled=False, latent_channels=1, latent_size=2, shuffle_buffer=1,
                      on_error="skip")
    assert [int(x[0, 0, 0]) for x, _ in ds] == [5, 7] and ds.policy.skipped == 1


@pytest.mark.parametrize("cut_at,message", [
    (10240, "ended after 5 of its 7 samples"),  # at a member boundary: a valid, shorter tar; the count tells
    (6244, r"truncated tar \(a header cut after 100 bytes\)"),  # tarfile would take this for the end
    (6744, r"truncated tar \(member of 160 bytes cut after 88\)"),
])
def test_truncated_shard_is_named_or_skipped(shards, tmp_path, cut_at, message):
    urls, _ = shards
    cut = tmp_path / "cut.tar"
    data = open(urls[2], "rb").read()
    cut.write_bytes(data[:cut_at])  # shard 2 holds keys 8..14
    counts = {str(cut): 7, urls[3]: 1}
    ds = ShardDataset([str(cut), urls[3]], 1.0, resampled=False, shuffle_buffer=1, shard_counts=counts)
    with pytest.raises(DataError, match=rf"cut\.tar: {message}"):
        list(ds)
    ds = ShardDataset([str(cut), urls[3]], 1.0, resampled=False, shuffle_buffer=1, on_error="skip",
                      shard_counts=counts)
    got = sorted(int(x[0, 0, 0]) for x, _ in ds)  # the samples before the cut, then shard 3's
    assert got == list(range(8, 8 + len(got) - 1)) + [15] and len(got) < 8 and ds.policy.skipped == 1


def test_wrong_labels_and_missing_members_are_named(tmp_path):
    import numpy as np

    m = np.zeros((2, 1, 1), np.float32)
    L.write_shard(tmp_path / "a.tar", [(0, m, 7)])
    with pytest.raises(DataError, match=r"a\.tar: sample 00000000: label 7 outside \[0, 5\)"):
        list(ShardDataset([str(tmp_path / "a.tar")], resampled=False, num_classes=5))
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        tar.add(tmp_path / "a.tar", arcname="00000001.moments.npy")
    with pytest.raises(DataError, match=r"b\.tar: sample 00000001: lacks a .moments.npy or .cls member"):
        list(ShardDataset([str(tmp_path / "b.tar")], resampled=False))


def test_resampled_unreadable_shards_fail_instead_of_spinning(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"junk" * 100)
    ds = ShardDataset([str(tmp_path / "junk.tar")], resampled=True, num_samples=4, on_error="skip")
    with pytest.raises(DataError, match="no readable sample in the last 12 shards"):
        list(ds)


def test_a_bad_shard_drawn_again_and_again_counts_once_and_names_the_worker(shards, tmp_path, caplog):
    urls, _ = shards
    cut = tmp_path / "cut.tar"
    cut.write_bytes(open(urls[2], "rb").read()[:10240])  # 5 of its 7 samples
    ds = ShardDataset([str(cut), urls[3]], 1.0, resampled=True, num_samples=200, shuffle_buffer=1, on_error="skip",
                      shard_counts={str(cut): 7, urls[3]: 1})
    with caplog.at_level("WARNING", logger="dmf.data.errors"):
        assert len(list(ds)) == 200  # the cut shard is drawn dozens of times
    assert ds.policy.skipped == 1
    lines = [r.getMessage() for r in caplog.records if "skipped bad sample" in r.getMessage()]
    assert len(lines) == 1 and "(main process)" in lines[0] and "ended after 5 of its 7 samples" in lines[0]
    loader = DataLoader(ShardDataset([str(cut), urls[3]], 1.0, resampled=True, num_samples=100, on_error="skip",
                                     shard_counts={str(cut): 7, urls[3]: 1}, num_workers=1),
                        batch_size=None, num_workers=1, timeout=60)
    assert len(list(loader)) == 100


@pytest.fixture(scope="module")
def noisy_shards(tmp_path_factory):
    return write_key_shards(tmp_path_factory.mktemp("noisy"), COUNTS, std=0.5)[0]


def rank_stream(urls, rank, workers, *, done=0, world=2, dataset=ShardDataset, **kw):
    """One rank's dataset in epoch 1, as the trainer builds it, resumed after `done` batches of 2 per rank
    (ResumeState's count: done x batch x world samples of the epoch)."""
    args = dict(scale=1.0, seed=3, rank=rank, world_size=world, num_workers=workers, shuffle_buffer=4, resampled=True,
                num_samples=40, batch_size=2, flip=True)
    ds = dataset(urls, **{**args, **kw})
    ds.set_epoch(1)
    if done:
        ds.skip_once(done * 2 * world)
    return ds


def batches(ds) -> list[torch.Tensor]:
    """A pass in batches of 2 through a DataLoader with the dataset's worker count."""
    workers = ds.num_workers
    loader = DataLoader(ds, batch_size=2, drop_last=True, num_workers=workers, timeout=60 if workers else 0)
    return [x for x, _ in loader]


@pytest.mark.parametrize("workers,done", [(0, 3), (2, 3), (2, 4), (2, 9)])
def test_a_resumed_pass_continues_every_ranks_batches_bit_for_bit(noisy_shards, workers, done):
    # 40 samples, 2 ranks: 10 batches of 2 per rank (5 per worker); an odd `done` starts the resumed pass on worker 1's
    # stream, 9 leaves one batch
    full = {}
    for rank in (0, 1):
        full[rank] = batches(rank_stream(noisy_shards, rank, workers))
        resumed = batches(rank_stream(noisy_shards, rank, workers, done=done))
        assert len(full[rank]) == 10 and len(resumed) == 10 - done
        for step, (a, b) in enumerate(zip(full[rank][done:], resumed)):
            assert torch.equal(a, b), f"rank {rank}, batch {done + step}"
    assert not torch.equal(full[0][0], full[1][0])  # (the ranks read apart)
    ds = rank_stream(noisy_shards, 1, 0, done=done)
    assert len(batches(ds)) == 10 - done and len(batches(ds)) == 10  # the skip holds for its epoch only


class CountingDecodes(ShardDataset):
    decodes = 0

    def _decode(self, sample):
        self.decodes += 1
        return super()._decode(sample)


def test_the_skipped_samples_are_not_decoded(noisy_shards):
    # one process, 200 samples = 100 batches, resumed after 90: the skip reads 180 samples' bytes, decodes none of them
    full = batches(rank_stream(noisy_shards, 0, 0, world=1, num_samples=200))
    ds = rank_stream(noisy_shards, 0, 0, world=1, num_samples=200, done=90, dataset=CountingDecodes)
    resumed = batches(ds)
    assert len(resumed) == 10 and all(torch.equal(a, b) for a, b in zip(full[90:], resumed))
    assert ds.decodes <= 20 + 4  # the 20 samples it yields, plus at most the shuffle buffer's


def test_with_on_error_skip_a_resume_leaves_out_the_same_bad_samples(noisy_shards, tmp_path):
    bad = tmp_path / "bad.tar"
    _corrupt_member(noisy_shards[2], bad, "00000010", lambda d: d[:70])  # shard 2 holds keys 8..14
    urls = [*noisy_shards[:2], str(bad), *noisy_shards[3:]]
    ds = rank_stream(urls, 0, 0, on_error="skip")
    full = batches(ds)
    assert ds.policy.skipped == 1  # the bad shard was drawn in this rank's stream
    resumed = batches(rank_stream(urls, 0, 0, on_error="skip", done=6))
    assert all(torch.equal(a, b) for a, b in zip(full[6:], resumed)) and len(resumed) == 4


def test_a_ranks_epoch_of_resampled_shards_is_whole_optimizer_steps():
    """Lightning steps at an epoch's last batch even mid-accumulation, at a fraction of the global batch: each rank's
    batches per epoch (its workers' together) are a multiple of the accumulation, rounded up."""
    for world, workers, batch, accumulate in ((2, 2, 16, 3), (1, 4, 8, 2), (4, 3, 5, 4), (1, 0, 7, 5), (2, 2, 16, 1)):
        ds = ShardDataset(["a.tar"], num_samples=1000, world_size=world, num_workers=workers, batch_size=batch,
                          accumulate=accumulate)
        batches = len(ds) // batch
        assert len(ds) % batch == 0 and batches % accumulate == 0 and batches * batch * world >= 1000
        assert (batches - accumulate) * batch * world < 1000 + world * max(1, workers) * batch * accumulate


def test_an_exact_shard_pass_with_accumulation_is_refused_before_training(tmp_path):
    from dmf.train.preflight import PreflightError, layout
    from tests.helpers import compose_config

    exact = ["data=imagenet256_wds", "data.datamodule.resampled=false", "data.global_batch_size=256",
             f"run_dir={tmp_path}"]
    with pytest.raises(PreflightError, match="resampled=false .* 4 accumulation step.*resampled=true"):
        layout(compose_config([*exact, "data.max_batch_per_device=64"]))
    assert layout(compose_config(exact)).accumulate == 1
