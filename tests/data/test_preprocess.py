"""Preprocessing real images with a tiny random VAE: both layouts agree, kills resume to the same bytes,
outputs are never silently overwritten or mixed, and bad images are a named error or a counted skip."""
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from dmf.data import layout as L
from dmf.data.errors import DataError
from dmf.data.images import center_crop_adm
from dmf.data.preprocess import cli, preprocess
from dmf.data.vae import SDVAE
from tests.data.data_helpers import RESOLUTION, run_preprocess, tree_bytes


def read_shards(root):
    """key -> (moments, label) over every shard in the manifest."""
    directory = root / L.WDS_DIR
    manifest = json.loads((directory / L.MANIFEST).read_text())
    out = {}
    for shard in manifest["shards"]:
        with tarfile.open(directory / shard["file"]) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        keys = {name.split(".")[0] for name in members}
        assert len(keys) == shard["count"]
        for key in keys:
            moments = np.load(io.BytesIO(members[f"{key}.moments.npy"]))
            out[key] = (moments, int(members[f"{key}.cls"]))
    return manifest, out


def test_both_layouts_hold_the_same_moments_and_labels(preprocessed, image_dir, tiny_vae_dir):
    table = json.loads((preprocessed / "vae-sd" / "dataset.json").read_text())["labels"]
    assert [r for r, _ in table] == [f"{i // 4:05d}/img-mean-std-{i:08d}.npy" for i in range(9)]
    assert [lab for _, lab in table] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    manifest, shards = read_shards(preprocessed)
    assert manifest["num_samples"] == 9 and manifest["class_counts"] == [3, 3, 3]
    assert manifest["moments_shape"] == [8, 8, 8] and sorted(shards) == [f"{i:08d}" for i in range(9)]
    for rel, label in table:
        arr = np.load(preprocessed / "vae-sd" / rel)
        assert arr.dtype == np.float32 and arr.shape == (8, 8, 8)
        key = re.search(r"(\d{8})\.npy", rel).group(1)
        np.testing.assert_array_equal(shards[key][0], arr)
        assert shards[key][1] == label
    # the stored moments are the VAE posterior of the ADM-cropped image scaled to [-1, 1]
    image = PIL.Image.open(image_dir / "n02_dog" / "img2.jpg").convert("RGB")
    x = torch.from_numpy(np.array(center_crop_adm(image, RESOLUTION))).permute(2, 0, 1)[None].float() / 127.5 - 1
    expect = SDVAE(str(tiny_vae_dir)).encode_moments(x)[0].numpy()
    np.testing.assert_allclose(np.load(preprocessed / "vae-sd" / "00001" / "img-mean-std-00000005.npy"), expect,
                               rtol=1e-4, atol=1e-5)  # batch of 3 vs 1: float reassociation
    # shards mix classes (seeded order), not one class per shard as sorted order would
    with tarfile.open(preprocessed / "wds" / "latents-000000.tar") as tar:
        assert tar.getnames()[0] != "00000000.moments.npy"


def test_packed_shards_are_byte_identical_and_direct_shards_equal(preprocessed, direct_wds, tmp_path):
    preprocess(preprocessed, tmp_path / "packed", layout="wds", shard_size=4, num_workers=0, progress=False)
    assert tree_bytes(tmp_path / "packed", "wds") == tree_bytes(preprocessed, "wds")
    # straight from images: same shards, same order; the VAE batches differ (shard vs folder order), so
    # the moments agree to float reassociation only
    (m_direct, direct), (m_ref, ref) = read_shards(direct_wds), read_shards(preprocessed)
    assert m_direct == m_ref and direct.keys() == ref.keys()
    for key, (moments, label) in ref.items():
        assert direct[key][1] == label
        np.testing.assert_allclose(direct[key][0], moments, rtol=1e-4, atol=1e-5)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way up can catch and tidy."""


@pytest.mark.parametrize("layout,kill_at", [("npy", 2), ("npy", 3), ("wds", 4), ("both", 9)])
def test_killed_run_resumes_to_the_same_result(preprocessed, direct_wds, image_dir, tiny_vae_dir, tmp_path,
                                               monkeypatch, layout, kill_at):
    """Renames are the commit points; dying at the k-th one covers 'data written, not renamed' and
    'data renamed, record not yet' states. The resumed run must equal an uninterrupted one byte for byte."""
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == kill_at:
            raise Killed
        return real_replace(src, dst)

    out = tmp_path / "out"
    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(Killed):
        run_preprocess(image_dir, out, tiny_vae_dir, layout=layout)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (out / "vae-sd" / "dataset.json").exists() and not (out / "wds" / "manifest.json").exists()
    leftovers = list((out / ".preprocess").rglob("tmp/part0/*"))
    # a half-written chunk was really left behind (a file's temporary is removed on the way up instead)
    assert leftovers or kill_at == 3 or Path(calls[-1]).suffix in (".tar", ".json")
    assert not list(out.rglob(".*.tmp-*"))
    run_preprocess(image_dir, out, tiny_vae_dir, layout=layout)
    reference = direct_wds if layout == "wds" else preprocessed
    for sub in {"npy": ["vae-sd"], "wds": ["wds"], "both": ["vae-sd", "wds"]}[layout]:
        assert tree_bytes(out, sub) == tree_bytes(reference, sub)
    assert not list((out / ".preprocess").rglob("tmp/part0/*")) and not list(out.rglob(".*.tmp-*"))


def test_rerun_of_a_finished_run_changes_nothing(preprocessed_copy, image_dir, tiny_vae_dir):
    before = tree_bytes(preprocessed_copy, "vae-sd")
    reports = run_preprocess(image_dir, preprocessed_copy, tiny_vae_dir)
    assert reports["npy"]["samples_out"] == 9 and reports["wds"]["samples_out"] == 9
    assert tree_bytes(preprocessed_copy, "vae-sd") == before


def test_never_mixes_datasets_or_overwrites_foreign_data(preprocessed_copy, image_dir, tiny_vae_dir, tmp_path):
    with pytest.raises(ValueError, match=r"different npy preprocessing run.*num_items: 9 \(on disk\) vs 5"):
        run_preprocess(image_dir, preprocessed_copy, tiny_vae_dir, limit=5)
    with pytest.raises(ValueError, match="folder_size: 4 .on disk. vs 1000"):
        run_preprocess(image_dir, preprocessed_copy, tiny_vae_dir, folder_size=1000)
    foreign = tmp_path / "foreign"
    shutil.copytree(preprocessed_copy / "vae-sd", foreign / "vae-sd")
    with pytest.raises(ValueError, match="was not written by this tool"):
        run_preprocess(image_dir, foreign, tiny_vae_dir, layout="npy")


def test_final_check_reads_outputs_back(preprocessed_copy, image_dir, tiny_vae_dir):
    (preprocessed_copy / "vae-sd" / "00001" / "img-mean-std-00000006.npy").unlink()
    os.utime(preprocessed_copy / "vae-sd" / "00001")
    with pytest.raises(RuntimeError, match=r"vae-sd/00001 holds 3 samples where 4 were written"):
        run_preprocess(image_dir, preprocessed_copy, tiny_vae_dir, layout="npy")


@pytest.fixture
def images_with_bad_file(image_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(image_dir, src)
    (src / "n02_dog" / "img1.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return src


def test_bad_image_raises_naming_the_file(images_with_bad_file, tiny_vae_dir, tmp_path):
    with pytest.raises(DataError, match=r"n02_dog/img1\.jpg: cannot decode"):
        run_preprocess(images_with_bad_file, tmp_path / "out", tiny_vae_dir)


def test_bad_image_skipped_is_counted_per_class(images_with_bad_file, tiny_vae_dir, tmp_path, caplog):
    reports = run_preprocess(images_with_bad_file, tmp_path / "out", tiny_vae_dir, on_error="skip")
    for layout in ("npy", "wds"):
        r = reports[layout]
        assert (r["images_in"], r["samples_out"], r["skipped"]) == (9, 8, 1)
        assert r["per_class_in"] == [3, 3, 3] and r["per_class_out"] == [3, 2, 3]
        assert "n02_dog/img1.jpg" in r["skipped_files"][0]["error"]
    table = json.loads((tmp_path / "out" / "vae-sd" / "dataset.json").read_text())["labels"]
    assert len(table) == 8 and "00001/img-mean-std-00000004.npy" not in dict(table)
    assert "skipped bad sample #1" in caplog.text


def test_cli_and_hydra_mode_entrypoints(image_dir, tiny_vae_dir, tmp_path):
    from omegaconf import OmegaConf

    from dmf.data.preprocess import main

    reports = cli(["--input", str(image_dir), "--out", str(tmp_path / "cli"), "--resolution", str(RESOLUTION),
                   "--vae", str(tiny_vae_dir), "--layout", "npy", "--num-workers", "0", "--limit", "3",
                   "--device", "cpu", "--no-progress"])
    assert reports["npy"]["samples_out"] == 3
    preset = OmegaConf.load("conf/preprocess/default.yaml")
    cfg = OmegaConf.create({
        "data": {"resolution": RESOLUTION, "num_classes": 3, "latent_channels": 4, "latent_size": 8,
                 "root": str(tmp_path / "hydra"), "format": "wds", "on_error": "raise",
                 "vae": {"_target_": "dmf.data.vae.SDVAE", "path": str(tiny_vae_dir), "scale": 0.18215}},
        "preprocess": preset})
    cfg.preprocess.input, cfg.preprocess.num_workers, cfg.preprocess.progress = str(image_dir), 0, False
    assert main(cfg)["wds"]["samples_out"] == 9
    cfg.data.latent_size = 16
    with pytest.raises(ValueError, match=r"makes moments of shape \(8, 8, 8\), but the data config expects"):
        main(cfg)


def test_parts_share_the_work_and_the_last_one_writes_the_index(preprocessed, image_dir, tiny_vae_dir, tmp_path):
    out = tmp_path / "out"
    first = run_preprocess(image_dir, out, tiny_vae_dir, part=0, num_parts=2)
    assert first == {} and not (out / "vae-sd" / "dataset.json").exists()  # chunk 1 belongs to part 1
    assert sorted(p.name for p in (out / "vae-sd").iterdir()) == ["00000", "00002"]
    second = run_preprocess(image_dir, out, tiny_vae_dir, part=1, num_parts=2)
    assert second["npy"]["samples_out"] == 9 and second["wds"]["samples_out"] == 9
    assert tree_bytes(out, "vae-sd") == tree_bytes(preprocessed, "vae-sd")
    assert tree_bytes(out, "wds") == tree_bytes(preprocessed, "wds")
    with pytest.raises(ValueError, match=r"part=2 must be in \[0, num_parts=2\)"):
        run_preprocess(image_dir, out, tiny_vae_dir, part=2, num_parts=2)
