"""The shard reader against tars from other writers (webdataset's TarWriter, tarfile's GNU/pax formats),
and our shards against webdataset's own reader."""
import io
import tarfile

import numpy as np
import pytest
import webdataset as wds

from dmf.data import layout as L
from dmf.data.errors import DataError
from dmf.data.tario import iter_samples


def test_reads_webdataset_tarwriter_shards(tmp_path):
    path = str(tmp_path / "w.tar")
    with wds.TarWriter(path) as sink:
        for i in range(3):
            sink.write({"__key__": f"dir/s{i}", "moments.npy": np.full((2, 1, 1), i, np.float32), "cls": i})
    samples = list(iter_samples(path))
    assert [s["__key__"] for s in samples] == ["dir/s0", "dir/s1", "dir/s2"]
    assert np.load(io.BytesIO(samples[2]["moments.npy"]))[0, 0, 0] == 2 and samples[1]["cls"] == b"1"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_tar_format(tmp_path, fmt):
    folder = "d" * 120 if fmt != tarfile.USTAR_FORMAT else "d" * 90  # ustar: 155-byte prefix + 100-byte name
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for suffix, data in (("moments.npy", b"abc"), ("cls", b"7")):
            info = tarfile.TarInfo(f"{folder}/{'k' * 30}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(tarfile.TarInfo("a_dir"))  # special members are skipped
    (sample,) = iter_samples(str(path))
    assert sample["__key__"] == f"{folder}/{'k' * 30}" and sample["cls"] == b"7"


def test_our_shards_read_with_webdataset_itself(tmp_path):
    L.write_shard(tmp_path / "ours.tar", [(i, np.full((2, 1, 1), i, np.float32), i % 2) for i in range(4)])
    got = list(wds.WebDataset(str(tmp_path / "ours.tar"), shardshuffle=False).decode().to_tuple("moments.npy", "cls"))
    assert [int(m[0, 0, 0]) for m, _ in got] == [0, 1, 2, 3] and [c for _, c in got] == [0, 1, 0, 1]


def test_corrupt_header_is_named(tmp_path):
    L.write_shard(tmp_path / "a.tar", [(0, np.zeros((2, 1, 1), np.float32), 0)])
    data = bytearray((tmp_path / "a.tar").read_bytes())
    data[10] ^= 0xFF  # inside the first member's name: the checksum no longer matches
    (tmp_path / "a.tar").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"a\.tar: corrupt tar header"):
        list(iter_samples(str(tmp_path / "a.tar")))
