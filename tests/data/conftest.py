"""Shared fixtures for the data tests: a tiny random SD-style VAE saved to disk, a few real images in class
folders, and one preprocessing run into both layouts (session-scoped: the tests only read it)."""
import shutil
from pathlib import Path

import pytest

from tests.data.data_helpers import run_preprocess, tiny_autoencoder, write_images


@pytest.fixture(scope="session")
def tiny_vae_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "tiny-sd-vae"
    tiny_autoencoder(0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images") / "train")


@pytest.fixture(scope="session")
def preprocessed(tmp_path_factory, image_dir, tiny_vae_dir) -> Path:
    """Both layouts of the nine images; treat as read-only (copy it before changing anything)."""
    out = tmp_path_factory.mktemp("prep") / "out"
    run_preprocess(image_dir, out, tiny_vae_dir)
    return out


@pytest.fixture(scope="session")
def direct_wds(tmp_path_factory, image_dir, tiny_vae_dir) -> Path:
    """Shards straight from the images (layout=wds), uninterrupted; read-only."""
    out = tmp_path_factory.mktemp("prep") / "direct"
    run_preprocess(image_dir, out, tiny_vae_dir, layout="wds")
    return out


@pytest.fixture
def preprocessed_copy(preprocessed, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(preprocessed, dst)
    return dst
