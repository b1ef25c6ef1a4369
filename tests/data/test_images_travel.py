"""The images travel with the latents (REPA pretraining): preprocessing writes the REPA authors' images/ layout
beside vae-sd/ and an image.png into each shard sample, in the latents' order with their labels; both datasets
pair each latent with its image (flipped together) when asked, stay (latent, label) when not, and data without
images is refused naming the fix."""
import json
import tarfile

import numpy as np
import PIL.Image
import pytest
import torch

from dmf.data import layout as L
from dmf.data.datamodules import ShardDataModule
from dmf.data.errors import DataError
from dmf.data.images import center_crop_adm, decode_image, list_images, png_bytes
from dmf.data.latent_folder import LatentFolderDataset
from dmf.data.preprocess import preprocess
from dmf.data.shards import ShardDataset
from tests.data.data_helpers import RESOLUTION, run_preprocess

FIX = "mode=preprocess .*preprocess.images=true"


def shard_members(root) -> dict[str, bytes]:
    out = {}
    for tar_path in sorted((root / L.WDS_DIR).glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            out.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    return out


def test_images_follow_the_latents_order_labels_and_crops(preprocessed, image_dir):
    latents = json.loads((preprocessed / "vae-sd" / "dataset.json").read_text())["labels"]
    images = json.loads((preprocessed / "images" / "dataset.json").read_text())["labels"]
    # the authors' names: images/<index // 1000 (here folder_size 4), 5 digits>/img<index, 8 digits>.png
    assert [r for r, _ in images] == [f"{i // 4:05d}/img{i:08d}.png" for i in range(9)]
    assert [lab for _, lab in images] == [lab for _, lab in latents]
    listing = list_images(image_dir)
    members = shard_members(preprocessed)
    for i, (rel, label) in enumerate(images):
        stored = (preprocessed / "images" / rel).read_bytes()
        source = PIL.Image.open(image_dir / listing.relpaths[i]).convert("RGB")
        crop = torch.from_numpy(np.array(center_crop_adm(source, RESOLUTION))).permute(2, 0, 1)
        assert torch.equal(decode_image(stored, rel), crop)  # the very pixels the VAE encoded
        assert members[f"{i:08d}.image.png"] == stored and int(members[f"{i:08d}.cls"]) == label
    assert json.loads((preprocessed / "wds" / L.MANIFEST).read_text())["images"] is True


def test_latents_only_on_request_and_never_mixed_with_an_images_run(preprocessed, image_dir, tiny_vae_dir, tmp_path):
    out = tmp_path / "lean"
    run_preprocess(image_dir, out, tiny_vae_dir, images=False)
    assert not (out / "images").exists()
    assert not any(name.endswith(".image.png") for name in shard_members(out))
    assert json.loads((out / "wds" / L.MANIFEST).read_text())["images"] is False
    # the latents are those of the run with images
    for npy in (out / "vae-sd").rglob("*.npy"):
        assert npy.read_bytes() == (preprocessed / npy.relative_to(out)).read_bytes()
    with pytest.raises(ValueError, match=r"different npy preprocessing run: images: None \(on disk\) vs True"):
        run_preprocess(image_dir, out, tiny_vae_dir)
    # packing a latent folder into shards: its images come along, or the packing says how to go without
    with pytest.raises(ValueError, match=r"no images/dataset.json beside .*preprocess.images=false"):
        preprocess(out, tmp_path / "packed", layout="wds", shard_size=4, num_workers=0, progress=False)
    preprocess(out, tmp_path / "packed", layout="wds", shard_size=4, num_workers=0, progress=False, images=False)


def ramp_dataset(root, n=6, size=4):
    """Sample k: moments mean = k + column / 10 (std 0), image = 10 k + column: a latent and its image identify
    the sample and show whether they were flipped. Both layouts, labels k % 3."""
    cols = np.arange(size, dtype=np.float32)
    table_npy, table_img, samples = [], [], []
    for k in range(n):
        moments = np.zeros((2, size, size), np.float32)
        moments[0] = k + cols / 10
        image = torch.from_numpy(np.broadcast_to(10 * k + cols, (3, size, size)).astype(np.uint8).copy())
        png = png_bytes(image)
        for rel, data in ((L.npy_relpath(k), L.npy_bytes(moments)), (L.image_relpath(k), png)):
            path = root / (L.NPY_DIR if rel.endswith(".npy") else L.IMAGE_DIR) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        table_npy.append([L.npy_relpath(k), k % 3])
        table_img.append([L.image_relpath(k), k % 3])
        samples.append((k, moments, k % 3, png))
    L.write_json_atomic(root / L.NPY_DIR / "dataset.json", {"labels": table_npy})
    L.write_json_atomic(root / L.IMAGE_DIR / "dataset.json", {"labels": table_img})
    L.write_shard(root / L.WDS_DIR / L.shard_name(0), samples)
    L.write_json_atomic(root / L.WDS_DIR / L.MANIFEST, {
        "format": L.MANIFEST_FORMAT, "num_samples": n, "num_classes": 3, "class_counts": [n // 3] * 3,
        "moments_shape": [2, size, size], "images": True, "shards": [{"file": L.shard_name(0), "count": n}]})
    return root


def check_pair(image, latent, label):
    k = int(image[0, 0].min()) // 10
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 4) and label == k % 3
    flipped = bool(image[0, 0, 0] > image[0, 0, -1])
    assert bool(latent[0, 0, 0] > latent[0, 0, -1]) == flipped  # flipped together, or not at all
    expect = torch.arange(4.0) / 10 + k
    torch.testing.assert_close(latent[0, 0], expect.flip(0) if flipped else expect)
    return flipped


def test_both_datasets_pair_each_latent_with_its_image_and_flip_them_together(tmp_path):
    root = ramp_dataset(tmp_path)
    folder = LatentFolderDataset(root, scale=1.0, flip=True, images=True)
    shards = ShardDataset([str(root / L.WDS_DIR / L.shard_name(0))], scale=1.0, flip=True, resampled=False,
                          images=True, shuffle_buffer=1)
    flips = [check_pair(*folder[i % 6]) for i in range(24)]
    flips += [check_pair(*item) for _ in range(4) for item in shards]
    assert any(flips) and not all(flips)
    # lean without images: (latent, label), as before
    assert len(LatentFolderDataset(root, scale=1.0)[0]) == 2
    assert len(next(iter(ShardDataset([str(root / L.WDS_DIR / L.shard_name(0))], resampled=False)))) == 2


def test_a_missing_or_mislabelled_image_is_named(tmp_path):
    root = ramp_dataset(tmp_path)
    (root / "images" / L.image_relpath(2)).unlink()
    with pytest.raises(DataError, match=r"images/00000/img00000002\.png: listed in .* but missing on disk"):
        LatentFolderDataset(root, images=True)
    assert len(LatentFolderDataset(root, images=True, on_error="skip")) == 5
    table = json.loads((root / "images" / "dataset.json").read_text())
    table["labels"][4][1] = 0
    (root / "images" / "dataset.json").write_text(json.dumps(table))
    with pytest.raises(DataError, match=r"img00000004\.png: label 0 in .* latent .* has label 1: images/ and vae-sd/"):
        LatentFolderDataset(root, images=True, check_files=False)


def test_data_without_images_is_refused_naming_the_fix(tmp_path):
    root = ramp_dataset(tmp_path)
    manifest = json.loads((root / "wds" / L.MANIFEST).read_text())
    (root / "wds" / L.MANIFEST).write_text(json.dumps({**manifest, "images": False}))
    with pytest.raises(ValueError, match=f"manifest.json says the shards carry no images.*{FIX}"):
        ShardDataModule(root=str(root), images=True, num_workers=0).setup()
    ShardDataModule(root=str(root), num_workers=0).setup()  # lean runs do not care
    (root / "images" / "dataset.json").unlink()
    with pytest.raises(FileNotFoundError, match=f"there is no images/dataset.json.*{FIX}"):
        LatentFolderDataset(root, images=True)
    # shards given by URL have no manifest: the sample itself says so
    L.write_shard(root / "lean.tar", [(0, np.zeros((2, 1, 1), np.float32), 0)])
    with pytest.raises(DataError, match=f"sample 00000000: the sample has no .image.png member.*{FIX}"):
        next(iter(ShardDataset([str(root / "lean.tar")], resampled=False, images=True)))
