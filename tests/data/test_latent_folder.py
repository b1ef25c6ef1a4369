"""The reference .npy layout as a map-style dataset: posterior sampling per fetch, flips, bad files."""
import json

import numpy as np
import pytest
import torch

from dmf.data.errors import DataError
from dmf.data.latent_folder import LatentFolderDataset


def make_folder(root, n=6, shape=(8, 2, 2), num_classes=3):
    """Item i: mean = i + column index (so a flip is visible), std = 0.5."""
    d = root / "vae-sd"
    labels = []
    for i in range(n):
        rel = f"{i // 4:05d}/img-mean-std-{i:08d}.npy"
        m = np.zeros(shape, np.float32)
        c = shape[0] // 2
        m[:c] = i + np.arange(shape[2], dtype=np.float32)
        m[c:] = 0.5
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(d / rel, m)
        labels.append([rel, i % num_classes])
    (d / "dataset.json").write_text(json.dumps({"labels": labels}))
    return d


def test_reads_preprocessed_folder_in_model_space(preprocessed):
    ds = LatentFolderDataset(preprocessed, latent_channels=4, latent_size=8, num_classes=3)
    x, y = ds[5]
    assert len(ds) == 9 and x.shape == (4, 8, 8) and x.dtype == torch.float32 and y == 1
    assert [ds[i][1] for i in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert LatentFolderDataset(preprocessed / "vae-sd").relpaths.tolist() == ds.relpaths.tolist()


def test_posterior_sampled_per_fetch_and_scaled(tmp_path):
    make_folder(tmp_path)
    ds = LatentFolderDataset(tmp_path, scale=0.5)
    x = torch.stack([ds[3][0] for _ in range(400)])  # mean 3 + column, std 0.5, times 0.5
    assert not torch.equal(x[0], x[1])
    torch.testing.assert_close(x.mean(0), torch.tensor([1.5, 2.0]).expand(4, 2, 2), atol=0.05, rtol=0)
    assert abs(x.std(0).mean().item() - 0.25) < 0.02


def test_flip_mirrors_width(tmp_path):
    make_folder(tmp_path)
    ds = LatentFolderDataset(tmp_path, scale=1.0, flip=True)
    torch.manual_seed(0)
    firsts = {round(ds[0][0][..., 0].mean().item()) for _ in range(40)}  # column 0 holds 0, column 1 holds 1
    assert firsts == {0, 1}
    ds = LatentFolderDataset(tmp_path, scale=1.0, flip=False)
    assert {round(ds[0][0][..., 0].mean().item()) for _ in range(40)} == {0}


def test_file_without_label_is_named(tmp_path, caplog):
    d = make_folder(tmp_path)
    np.save(d / "00001" / "img-mean-std-00000099.npy", np.zeros((8, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"00001/img-mean-std-00000099\.npy: no label for this file"):
        LatentFolderDataset(tmp_path)
    ds = LatentFolderDataset(tmp_path, on_error="skip")
    assert len(ds) == 6 and ds.policy.skipped == 1 and "1 bad index entries or files skipped" in caplog.text


def test_listed_file_missing_and_bad_label_are_named(tmp_path):
    d = make_folder(tmp_path)
    (d / "00000" / "img-mean-std-00000002.npy").unlink()
    with pytest.raises(DataError, match=r"img-mean-std-00000002\.npy: listed in .*dataset\.json but missing"):
        LatentFolderDataset(tmp_path)
    assert len(LatentFolderDataset(tmp_path, on_error="skip")) == 5
    with pytest.raises(DataError, match=r"img-mean-std-00000002\.npy: label 2 in .* not a class index in \[0, 2\)"):
        LatentFolderDataset(tmp_path, num_classes=2, check_files=False)


def test_corrupt_file_is_named_or_replaced_and_counted(tmp_path):
    d = make_folder(tmp_path)
    bad = d / "00000" / "img-mean-std-00000001.npy"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    ds = LatentFolderDataset(tmp_path, scale=1.0)
    with pytest.raises(DataError, match=r"img-mean-std-00000001\.npy: cannot read the \.npy"):
        ds[1]
    ds = LatentFolderDataset(tmp_path, scale=1.0, on_error="skip")
    x, y = ds[1]  # the next file instead, with its own label: a true sample, never a wrong one
    assert y == 2 and ds.policy.skipped == 1 and abs(x[:, :, 0].mean().item() - 2.0) < 1.5


def test_shape_mismatch_fails_at_start_with_a_hint(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(DataError, match=r"shape \(8, 2, 2\) but the data config expects \(8, 4, 4\).*data config"):
        LatentFolderDataset(tmp_path, latent_channels=4, latent_size=4, on_error="skip")
    with pytest.raises(FileNotFoundError, match="no vae-sd/dataset.json.*mode=preprocess"):
        LatentFolderDataset(tmp_path / "elsewhere")


def test_each_bad_item_counts_once(tmp_path):
    make_folder(tmp_path)
    ds = LatentFolderDataset(tmp_path, num_classes=2, on_error="skip")  # labels 2 are bad; their files are on disk
    assert len(ds) == 4 and ds.policy.skipped == 2  # two bad entries, each once (not again as "no label")
    bad = tmp_path / "vae-sd" / "00000" / "img-mean-std-00000001.npy"
    bad.write_bytes(bad.read_bytes()[:100])
    ds = LatentFolderDataset(tmp_path, scale=1.0, on_error="skip")
    for _ in range(3):  # fetched again every epoch: still one bad file
        ds[1]
    assert ds.policy.skipped == 1
