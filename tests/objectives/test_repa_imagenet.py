"""REPA pretraining on ImageNet latents, as a user runs it: a (tiny, fake) ImageNet train folder ->
`run.py mode=preprocess` -> images/ beside vae-sd/ and images in the shards -> `run.py experiment=sit_xl_256_repa`
trains with the DINOv2 encoder (random weights from a file) fed the stored images; without images it is refused."""
import json
from functools import partial
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from dmf.data import layout as L
from dmf.data.images import center_crop_adm, decode_image
from tests.data.data_helpers import tiny_autoencoder
from tests.objectives.conftest import TINY_VIT
from tests.helpers import run_python

CLASSES = ("n01440764", "n01443537")
FIX = ("mode=preprocess", "preprocess.images=true")


run_py = partial(run_python, "run.py")


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory) -> Path:
    """Three random photos per class, in the ImageNet train layout, in sizes the ADM crop must cut to 256."""
    root = tmp_path_factory.mktemp("imagenet") / "train"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for k, (h, w) in enumerate([(256, 300), (340, 270), (600, 512)]):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            PIL.Image.fromarray(pixels).save(root / name / f"{name}_{k}.{'JPEG' if k == 1 else 'png'}")
    return root


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "tiny-sd-vae"
    tiny_autoencoder(0).save_pretrained(path)
    return path


def preprocess(source, out, vae_dir, *extra):
    out_ = run_py("mode=preprocess", "data=imagenet256_latents", f"preprocess.input={source}", f"preprocess.out={out}",
                  f"data.vae.path={vae_dir}", "data.vae.decode_path=null", "preprocess.layout=both",
                  "preprocess.folder_size=4", "preprocess.shard_size=4", "preprocess.num_workers=0",
                  "preprocess.device=cpu", "preprocess.progress=false", f"hydra.run.dir={out}.log", *extra)
    assert out_.returncode == 0, out_.stderr[-3000:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, fake_imagenet, vae_dir) -> Path:
    out = tmp_path_factory.mktemp("data") / "imagenet256"
    preprocess(fake_imagenet, out, vae_dir)
    return out


def stored_images(root) -> tuple[torch.Tensor, list[int]]:
    table = L.read_json(root / "images" / "dataset.json")["labels"]
    return torch.stack([decode_image((root / "images" / rel).read_bytes(), rel) for rel, _ in table]), \
        [lab for _, lab in table]


def test_preprocess_writes_the_images_beside_the_latents(dataset, fake_imagenet):
    latents = L.read_json(dataset / "vae-sd" / "dataset.json")["labels"]
    images = L.read_json(dataset / "images" / "dataset.json")["labels"]
    assert [rel for rel, _ in images] == [f"{i // 4:05d}/img{i:08d}.png" for i in range(6)]
    assert [L.image_relpath_of(rel) for rel, _ in latents] == [rel for rel, _ in images]
    assert [lab for _, lab in images] == [lab for _, lab in latents] == [0, 0, 0, 1, 1, 1]
    sources = sorted(p.relative_to(fake_imagenet).as_posix() for p in fake_imagenet.rglob("*.*"))
    pixels, _ = stored_images(dataset)
    for i, rel in enumerate(sources):
        crop = np.array(center_crop_adm(PIL.Image.open(fake_imagenet / rel).convert("RGB"), 256))
        assert torch.equal(pixels[i], torch.from_numpy(crop).permute(2, 0, 1)), rel
    manifest = json.loads((dataset / "wds" / L.MANIFEST).read_text())
    assert manifest["images"] is True and manifest["num_samples"] == 6


def repa_run(data, root, vae_dir, dinov2_file, run_dir, *extra):
    return run_py(
        "experiment=sit_xl_256_repa", f"data={data}", f"data.root={root}", f"data.vae.path={vae_dir}",
        "data.vae.decode_path=null", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.repa_depth=1",
        f"model.z_dims=[{TINY_VIT['embed_dim']}]", "model.projector_dim=64", f"objective.encoder.weights={dinov2_file}",
        "+objective.encoder.arch_kwargs={" + ",".join(f"{k}:{v}" for k, v in TINY_VIT.items()) + "}",
        "data.global_batch_size=2", "data.datamodule.num_workers=0", "trainer.devices=1", "trainer.accelerator=cpu",
        "trainer.strategy=auto", "trainer.max_steps=2", "trainer.log_every_n_steps=1", "callbacks.progress.refresh_rate=0",
        f"hydra.run.dir={run_dir}", *extra)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["imagenet256_latents", "imagenet256_wds"])
def test_repa_pretraining_aligns_with_the_stored_images(dataset, vae_dir, dinov2_file, tmp_path, data):
    out = repa_run(data, dataset, vae_dir, dinov2_file, tmp_path / "run",
                   "+callbacks.record._target_=tests.objectives.repa_recorder.EncoderInputs",
                   f"+callbacks.record.path={tmp_path / 'rec'}")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/repa")
    repa = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(repa) == 2 and all(np.isfinite(repa)) and all(-1 <= v <= 1 for v in repa)
    record = torch.load(tmp_path / "rec" / "rank0.pt", weights_only=False)
    pixels, labels = stored_images(dataset)
    assert len(record["inputs"]) == len(record["batches"]) == 2
    for (images, latents, y), fed in zip(record["batches"], record["inputs"]):
        assert images.dtype == torch.uint8 and images.shape == (2, 3, 256, 256) and latents.shape == (2, 4, 32, 32)
        assert torch.equal(fed, images)  # the encoder sees the batch's images, untouched (it resizes them itself)
        for image, label in zip(images, y.tolist()):
            match = [i for i in range(len(pixels)) if torch.equal(pixels[i], image)]
            assert len(match) == 1 and labels[match[0]] == label  # a stored image, with its own label


@pytest.mark.slow
def test_repa_without_images_is_refused_before_training(fake_imagenet, vae_dir, dinov2_file, tmp_path):
    lean = tmp_path / "lean"
    preprocess(fake_imagenet, lean, vae_dir, "preprocess.images=false")
    assert not (lean / "images").exists()
    for data in ("imagenet256_latents", "imagenet256_wds"):
        out = repa_run(data, lean, vae_dir, dinov2_file, tmp_path / data)
        assert out.returncode != 0
        assert all(fix in out.stderr for fix in FIX) and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert not (tmp_path / data / "checkpoints").exists()
