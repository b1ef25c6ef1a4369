"""Source listing (folder, zip), labels as the reference tool assigns them, and the ADM center crop."""
import json
import zipfile

import numpy as np
import PIL.Image
import pytest

from dmf.data.images import CroppedImages, center_crop_adm, list_images
from tests.data.data_helpers import CLASSES


def test_folder_listing_sorted_with_class_folder_labels(image_dir):
    listing = list_images(image_dir)
    assert listing.classes == list(CLASSES)
    assert listing.relpaths == sorted(listing.relpaths) and len(listing) == 9
    assert listing.relpaths[6] == "n03_tree/img0.png"
    assert listing.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert listing.class_counts().tolist() == [3, 3, 3]
    assert list_images(image_dir, limit=4).labels.tolist() == [0, 0, 0, 1]


def test_zip_with_a_wrapping_folder_gives_the_same_labels(image_dir, tmp_path):
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(image_dir.rglob("*.*")):
            zf.write(p, f"ILSVRC/train/{p.relative_to(image_dir)}")
    listing, ref = list_images(archive), list_images(image_dir)
    assert listing.classes == ref.classes and listing.labels.tolist() == ref.labels.tolist()
    item = CroppedImages(listing, 64, [3])[0]
    assert item[0] == 3 and item[2] == "" and item[1].shape == (3, 64, 64)
    np.testing.assert_array_equal(item[1], CroppedImages(ref, 64, [3])[0][1])


def test_dataset_json_labels_take_precedence(image_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(image_dir, src)
    rels = list_images(src).relpaths
    (src / "dataset.json").write_text(json.dumps({"labels": [[r, 7 - i % 3] for i, r in enumerate(rels)]}))
    assert list_images(src).labels.tolist()[:3] == [7, 6, 5]
    (src / "dataset.json").write_text(json.dumps({"labels": [[r, 1] for r in rels[1:]]}))
    with pytest.raises(ValueError, match="no label for 1 image"):
        list_images(src)


def test_image_beside_class_folders_is_an_error(image_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(image_dir, src)
    shutil.copy(src / "n01_cat" / "img0.jpg", src / "stray.jpg")
    with pytest.raises(ValueError, match="'stray.jpg' sits beside the class folders"):
        list_images(src)
    with pytest.raises(FileNotFoundError, match="preprocess.input"):
        list_images(tmp_path / "nowhere")


def test_adm_center_crop_steps():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    out = center_crop_adm(PIL.Image.fromarray(arr), 64)
    # by hand: 300x200 -> BOX halving to 150x100 (100 < 128 stops) -> BICUBIC to 96x64 -> crop x 16..80
    im = PIL.Image.fromarray(arr).resize((150, 100), PIL.Image.Resampling.BOX)
    im = np.asarray(im.resize((96, 64), PIL.Image.Resampling.BICUBIC))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, im[:, 16:80])
    small = center_crop_adm(PIL.Image.fromarray(arr[:40, :50]), 64)  # upsampled, short side -> 64
    assert small.shape == (64, 64, 3)


def test_undecodable_image_is_reported_with_its_name(image_dir, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(image_dir, src)
    (src / "n02_dog" / "img1.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    listing = list_images(src)
    index, image, err, png = CroppedImages(listing, 64, [4])[0]
    assert index == 4 and image.shape == (3, 64, 64) and err.startswith("n02_dog/img1.jpg: cannot decode")
    assert png is None
