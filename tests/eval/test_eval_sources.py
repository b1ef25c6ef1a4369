"""Real-image sources for reference statistics: image folders (labels, ADM crop), webdataset shards, datasets."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dmf.digits.data import reference as digits
from dmf.eval.dist import DistInfo
from dmf.eval.reference.build import as_images, reference_states
from dmf.eval.reference.sources import ImageFolder, WebDatasetImages
from tests.eval.eval_helpers import pixel_scorer


def write_images(root, n=6, size=(20, 12)):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i:03d}.png")


def test_image_folder_crops_and_labels(tmp_path):
    write_images(tmp_path)
    ds = ImageFolder(str(tmp_path), resolution=8)
    x, y = ds[0]
    assert len(ds) == 6 and x.shape == (3, 8, 8) and x.dtype == torch.uint8
    assert sorted(set(ds.labels)) == [0, 1] and ds.labels[ds.files.index(tmp_path / "cat" / "001.png")] == 0
    table = [[p.relative_to(tmp_path).as_posix(), 7 if p.name == "000.png" else 3] for p in ds.files]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": table}))
    assert ImageFolder(str(tmp_path)).labels[ds.files.index(tmp_path / "dog" / "000.png")] == 7
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": table[1:]}))  # a partial table is an error
    with pytest.raises(ValueError, match="no label for 1 image"):
        ImageFolder(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(str(tmp_path / "empty"))


def test_webdataset_shards(tmp_path):
    import webdataset as wds

    rng = np.random.default_rng(1)
    with wds.TarWriter(str(tmp_path / "shard-000000.tar")) as sink:
        for i in range(3):
            sink.write({"__key__": f"{i:04d}", "png": rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), "cls": i})
    items = list(WebDatasetImages(str(tmp_path / "shard-{000000..000000}.tar"), resolution=8))
    assert [y for _, y in items] == [0, 1, 2] and items[0][0].shape == (3, 8, 8)


def test_missing_shards_or_folder_are_named_before_any_network_is_built(tmp_path):
    """mode=ref_stats on shards that are not there ended in a traceback from inside the first read."""
    from dmf.core.errors import MissingFileError

    (tmp_path / "shard-000000.tar").write_bytes(b"")
    with pytest.raises(MissingFileError, match=r"eval.ref_source.urls: 2 of 3 shards do not exist, e.g. .*shard-000001"):
        WebDatasetImages(str(tmp_path / "shard-{000000..000002}.tar"))
    with pytest.raises(MissingFileError, match="eval.ref_source.path=.* is not a directory of images"):
        ImageFolder(tmp_path / "nowhere")


def test_reference_from_digits_and_subset_for_pr():
    scorer = pixel_scorer(pr_max=None)
    scorer.metrics["pr"].max_samples = 100
    states = reference_states(digits(), scorer, "cpu", DistInfo(), batch_size=256, seed=0, log=lambda m: None)
    ref = scorer.reference(states)
    assert set(ref) == {"fd_pix", "pr"} and ref["pr"]["features"].shape == (100, 12)
    again = scorer.reference(reference_states(digits(), scorer, "cpu", DistInfo(), batch_size=100, seed=0,
                                              log=lambda m: None))
    np.testing.assert_array_equal(ref["pr"]["features"], again["pr"]["features"])  # same random subset
    np.testing.assert_allclose(ref["fd_pix"]["sigma"], again["fd_pix"]["sigma"], rtol=1e-10)


def test_as_images_spaces():
    gray = torch.zeros(2, 1, 4, 4)
    assert as_images(gray, "image").shape == (2, 3, 4, 4)
    assert as_images(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), "image").max() == 255
    with pytest.raises(ValueError, match="data.vae"):
        as_images(gray, "latent")
