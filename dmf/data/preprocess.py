"""Images (class folders or a zip) -> ADM center crop -> VAE posterior moments -> latent layouts.

    python run.py mode=preprocess data=imagenet256_latents preprocess.input=/data/ILSVRC/train
    python -m dmf.data.preprocess --input /data/ILSVRC/train --out datasets/imagenet256 --resolution 256

Layouts: `npy` (the reference vae-sd/ folder), `wds` (webdataset shards), `both` (npy, then shards
packed from it without encoding twice). With `images` (the default), the ADM crop each latent was encoded
from travels with it, for REPA pretraining: the npy layout writes the REPA authors' images/ folder beside
vae-sd/ (images/<folder>/img<index>.png + dataset.json, same numbers and labels), shards get a
<key>.image.png member. An input that already is a latent folder can be packed into
shards (layout wds). Work is cut into chunks (a 1,000-file folder or a shard) committed atomically,
so a run can be killed and re-run at any time: finished chunks are skipped. Several processes (GPUs,
array jobs) may share the work with `part`/`num_parts` (torchrun sets them); the one that completes
the last chunk checks, per class, that images in = samples out + skipped, reading the outputs back
from disk, and only then writes the index file (dataset.json / manifest.json).
"""
import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from dmf.core.errors import ConfigError
from dmf.core.options import check_known
from dmf.core.ranks import device_for, rank_and_world
from dmf.data import latent, layout as L
from dmf.data.errors import DataError, ErrorPolicy, check_policy
from dmf.data.images import ImageListing, list_images
from dmf.data.sources import ImageEncoder, LatentCopier, list_latents
from dmf.data.vae import IdentityVAE, vae_identity
from dmf.data.writers import ChunkWriter, NpyFolderWriter, ShardWriter

log = logging.getLogger(__name__)
LAYOUTS = ("npy", "wds", "both")
# conf/preprocess/default.yaml's keys (a test keeps the two equal)
KEYS = ("input", "out", "layout", "images", "folder_size", "shard_size", "batch_size", "num_workers", "device",
        "on_error", "seed", "limit", "part", "num_parts", "progress")


class ChunkBatches(Sampler):
    """Batches that never straddle a chunk, cut the same way on every run: a resumed chunk is encoded
    from exactly the same batches as in an uninterrupted run (bit-identical outputs)."""

    def __init__(self, chunk_lengths: list[int], batch_size: int):
        self.lengths, self.batch_size = chunk_lengths, batch_size

    def __iter__(self):
        start = 0
        for n in self.lengths:
            for s in range(0, n, self.batch_size):
                yield list(range(start + s, start + min(s + self.batch_size, n)))
            start += n

    def __len__(self):
        return sum(-(-n // self.batch_size) for n in self.lengths)


def _is_latent_folder(path) -> bool:
    try:
        L.npy_dir(path)
        return True
    except FileNotFoundError:
        return False


def _diff(old: dict, new: dict, prefix="") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} (on disk) vs {b!r} (this run)")
    return out


def _check_plan(writer: ChunkWriter, plan: dict) -> None:
    """Refuse to mix two datasets in one output folder; never overwrite what this tool did not write."""
    path = writer.state / "plan.json"
    if path.is_file():
        differences = _diff(L.read_json(path), plan)
        if differences:
            raise ConfigError(f"{writer.out} already holds a different {writer.layout} preprocessing run: "
                              + "; ".join(differences) + ". Choose another preprocess.out, or delete "
                              f"{' and '.join(map(str, writer.final_dirs()))} and {writer.state} to start over.")
        return
    for final_dir in writer.final_dirs():
        if final_dir.exists() and any(final_dir.iterdir()):
            raise ConfigError(f"{final_dir} exists and was not written by this tool (no {path}); refusing to "
                              f"overwrite it. Choose another preprocess.out or move it away.")


def _run_chunks(source, writer: ChunkWriter, listing: ImageListing, policy: ErrorPolicy, *, batch_size,
                num_workers, part, num_parts, progress, expected_shape) -> None:
    writer.clean_tmp()
    mine = [c for c in range(len(writer.chunks)) if c % num_parts == part]
    pending = [c for c in mine if not writer.is_done(c)]
    log.info("%s: %d of %d chunks for this part already done, %d to do", writer.layout,
             len(mine) - len(pending), len(mine), len(pending))
    if not pending:
        return
    lengths = [len(writer.chunks[c]) for c in pending]
    loader = DataLoader(source.dataset(np.concatenate([writer.chunks[c] for c in pending])),
                        batch_sampler=ChunkBatches(lengths, batch_size), num_workers=num_workers,
                        collate_fn=source.collate, pin_memory=torch.cuda.is_available())
    shape = tuple(expected_shape) if expected_shape is not None else None
    k, moments, pngs, skipped, seen = 0, {}, {}, [], 0
    with tqdm(total=sum(lengths), disable=not progress, desc=f"preprocess -> {writer.layout}", unit="img") as bar:
        for batch in loader:
            for index, m, err, png in source.process(batch):
                if not err and shape is not None and tuple(m.shape) != shape:
                    err = f"{listing.relpaths[index]}: moments of shape {tuple(m.shape)}, expected {shape}"
                if err:
                    policy(DataError(err))  # raises unless on_error=skip
                    skipped.append({"index": int(index), "file": listing.relpaths[index], "error": err})
                else:
                    shape = shape or tuple(m.shape)
                    moments[int(index)] = m
                    if png is not None:
                        pngs[int(index)] = png
                seen += 1
            bar.update(len(batch[0]))
            if seen == lengths[k]:  # batches never straddle chunks, so a chunk completes on a batch edge
                writer.commit(pending[k], moments, skipped, pngs)
                k, moments, pngs, skipped, seen = k + 1, {}, {}, [], 0
    writer.clean_tmp()


def _finalize(writer, listing: ImageListing) -> dict | None:
    """Read every chunk back, check counts per class, write the index file (dataset.json / manifest)."""
    left = [c for c in range(len(writer.chunks)) if not writer.is_done(c)]
    if left:
        log.warning("%s: %d chunk(s) not finished yet (other parts still running?); the index file is written "
                    "by whichever run finishes last", writer.layout, len(left))
        return None
    kept, skipped, shapes = [], [], set()
    for c, chunk in enumerate(writer.chunks):
        record = L.read_json(writer.record_path(c))
        bad = {s["index"] for s in record["skipped"]}
        good = [int(i) for i in chunk if int(i) not in bad]
        expected = {writer.key_name(i) for i in good}
        try:
            found = writer.found_keys(c)
        except Exception as err:
            found, reason = set(), f" ({type(err).__name__}: {err})"
        else:
            reason = ""
        if found != expected:
            raise RuntimeError(
                f"{writer.output_path(c)} holds {len(found)} samples where {len(expected)} were written{reason}; "
                f"delete {' and '.join(map(str, writer.output_paths(c)))} and {writer.record_path(c)} and re-run "
                f"to redo that chunk")
        kept += good
        skipped += record["skipped"]
        if record["shape"] is not None:
            shapes.add(tuple(record["shape"]))
    if len(shapes) > 1:
        raise RuntimeError(f"{writer.out}: chunks hold moments of different shapes {sorted(shapes)}")
    kept.sort()
    n_in = listing.class_counts()
    n_out = listing.class_counts(kept)
    n_skip = listing.class_counts([s["index"] for s in skipped])
    if len(kept) + len(skipped) != len(listing) or (n_in != n_out + n_skip).any():
        wrong = np.flatnonzero(n_in != n_out + n_skip)[:5].tolist()
        raise RuntimeError(f"count check failed: {len(listing)} images in, {len(kept)} samples out, "
                           f"{len(skipped)} skipped; classes {wrong} disagree")
    shape = list(shapes.pop()) if shapes else None
    writer.finalize(kept, shape)
    report = {"layout": writer.layout, "images_in": len(listing), "samples_out": len(kept),
              "skipped": len(skipped), "num_classes": len(listing.classes), "moments_shape": shape,
              "per_class_in": n_in.tolist(), "per_class_out": n_out.tolist(), "skipped_files": skipped}
    L.write_json_atomic(writer.state / "report.json", report)
    log.info("%s: %d images in, %d samples out, %d skipped; per class out: min %d, max %d over %d classes "
             "(details: %s)", writer.layout, len(listing), len(kept), len(skipped), n_out.min(), n_out.max(),
             len(n_out), writer.state / "report.json")
    for s in skipped[:20]:
        log.warning("skipped %s: %s", s["file"], s["error"])
    return report


def _resolve_part(part, num_parts) -> tuple[int, int]:
    """Explicit part/num_parts, else the launcher's rank and world size (torchrun or srun: one part per process)."""
    rank, world = rank_and_world()
    if num_parts is None:
        num_parts = world
    if part is None:
        part = rank if num_parts > 1 else 0
    if not 0 <= int(part) < int(num_parts):
        raise ConfigError(f"preprocess.part={part} must be in [0, num_parts={num_parts})")
    return int(part), int(num_parts)


def _encoder_identity(listing: ImageListing, resolution, vae, latent_shape) -> dict:
    """What the outputs depend on, recorded in plan.json; also the cheap checks of the VAE geometry."""
    if resolution is None or vae is None:
        raise ConfigError("encoding images needs a resolution and a VAE (data.resolution, data.vae)")
    if int(resolution) % vae.downsample:
        raise ConfigError(f"resolution {resolution} is not a multiple of the VAE downsampling {vae.downsample}")
    side = int(resolution) // vae.downsample
    made = (2 * (vae.latent_channels or 3), side, side)  # IdentityVAE keeps the 3 RGB channels
    if latent_shape is not None and tuple(latent_shape) != made:
        raise ConfigError(f"this VAE at resolution {resolution} makes moments of shape {made}, but the data "
                          f"config expects {tuple(latent_shape)} (2*latent_channels, latent_size, latent_size)")
    return {"kind": "images", "digest": listing.digest(), "num_items": len(listing), "resolution": int(resolution),
            "vae": vae_identity(vae)}


def check_options(layout: str, on_error: str, **sizes) -> None:
    """The options' values, before the VAE is fetched or anything is read."""
    if layout not in LAYOUTS:
        raise ConfigError(f"preprocess.layout={layout!r}: expected one of {LAYOUTS}")
    check_policy(on_error)
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"preprocess.{name}={value!r} must be an integer >= 1")


def preprocess(input, out, resolution: int | None = None, vae=None, *, layout: str = "npy",
               folder_size: int = 1000, shard_size: int = 1000, batch_size: int = 32, num_workers: int = 4,
               device: str = "auto", on_error: str = "raise", seed: int = 0, limit: int | None = None,
               num_classes: int | None = None, latent_shape=None, part: int | None = None,
               num_parts: int | None = None, progress: bool = True, images: bool = True) -> dict:
    """Run (or resume) preprocessing; returns {layout: report} for the layouts completed by this call.

    `vae` (an object with encode_moments, downsample, latent_channels) is only needed for images.
    `images`: the crops travel with the latents (images/ beside vae-sd/, an image.png in each shard sample).
    Everything that can fail cheaply is checked before the first image is encoded."""
    check_options(layout, on_error, folder_size=folder_size, shard_size=shard_size, batch_size=batch_size)
    if out is None:
        raise ConfigError("set preprocess.out=<output folder> (data configs default it to data.root)")
    part, num_parts = _resolve_part(part, num_parts)
    out = Path(out).expanduser()
    from_latents = _is_latent_folder(input)
    if from_latents and layout != "wds":
        raise ConfigError(f"{input} already is a latent folder; it can only be packed into shards (layout=wds)")
    if from_latents and images and not (L.image_dir(L.npy_dir(input)) / "dataset.json").is_file():
        raise ConfigError(f"{input} has no {L.IMAGE_DIR}/dataset.json beside its latents, so the shards cannot carry "
                          f"the images (REPA pretraining needs them): set preprocess.images=false to pack the latents "
                          f"alone, or preprocess the images with preprocess.images=true")
    listing = list_latents(input) if from_latents else list_images(input, limit)
    if num_classes is not None and len(listing.classes) > int(num_classes):
        raise ConfigError(f"{input} has {len(listing.classes)} classes but data.num_classes={num_classes}")
    if num_classes is not None and len(listing.classes) < int(num_classes):
        log.warning("%s has %d classes, data.num_classes=%d: labels are the indices of the classes found, "
                    "not of the full class list", input, len(listing.classes), num_classes)
    source_id = ({"kind": "latents", "digest": listing.digest(), "num_items": len(listing)} if from_latents
                 else _encoder_identity(listing, resolution, vae, latent_shape))

    keys, labels, images = listing.keys, listing.labels, bool(images)
    npy = NpyFolderWriter(out, keys, labels, folder_size, part, images) if layout in ("npy", "both") else None
    wds = ShardWriter(out, keys, labels, shard_size, seed, part, images) if layout in ("wds", "both") else None
    with_images = {"images": True} if images else {}  # absent when false: plans written before the key still match
    plans = [(w, plan) for w, plan in (
        (npy, {"source": source_id, "folder_size": int(folder_size), **with_images}),
        (wds, {"source": source_id, "shard_size": int(shard_size), "seed": int(seed), **with_images})) if w]
    for writer, plan in plans:  # all checked before anything is written
        _check_plan(writer, plan)
    for writer, plan in plans:
        L.write_json_atomic(writer.state / "plan.json", plan)

    policy = ErrorPolicy(on_error, where="preprocess")
    run = dict(batch_size=int(batch_size), num_workers=int(num_workers), part=part, num_parts=num_parts,
               progress=progress, expected_shape=latent_shape)
    if from_latents:
        source, first = LatentCopier(listing, images=images), wds
    else:
        device = device_for(device)
        source, first = ImageEncoder(listing, resolution, vae.to(device).eval(), device, images), npy or wds
    _run_chunks(source, first, listing, policy, **run)
    reports = {first.layout: _finalize(first, listing)}
    if layout == "both" and reports["npy"] is not None:
        # shards packed from the stored moments (no second encoding); images skipped then stay skipped.
        # Whichever part completes the npy layout packs every shard: the other parts may have exited.
        stored = ImageListing(str(out / L.NPY_DIR), [L.npy_relpath(i, folder_size) for i in range(len(listing))],
                              labels, listing.classes, keys)
        known_bad = {s["index"]: f"skipped by the npy stage: {s['error']}" for s in reports["npy"]["skipped_files"]}
        _run_chunks(LatentCopier(stored, known_bad, images), wds, stored, policy, **{**run, "part": 0, "num_parts": 1})
        reports["wds"] = _finalize(wds, stored)
    return {k: v for k, v in reports.items() if v is not None}


def main(cfg) -> dict:
    """`python run.py mode=preprocess data=<config> preprocess.input=<images>`: the whole composed cfg."""
    from hydra.utils import instantiate

    if "preprocess" not in cfg:
        raise ConfigError("the config has no `preprocess` node: conf/config.yaml's defaults need `- preprocess: "
                          "default` (or pass +preprocess=default)")
    p, data = cfg.preprocess, cfg.data
    check_known("preprocess", p, KEYS)  # a preprocess file of the user's is merged without Hydra's key check
    for key in ("out", "layout", "on_error"):
        try:
            p[key]
        except Exception as err:  # e.g. ${data.root} on a data config without one (data=digits)
            raise ConfigError(f"preprocess.{key} cannot be resolved ({err}); data={data.get('name')} has no "
                              f"root/format/on_error: use an image dataset config (e.g. data=imagenet256_latents) "
                              f"or set preprocess.{key} explicitly") from None
    if p.get("input") is None:
        raise ConfigError("set preprocess.input=<image folder, zip, or latent folder> (see docs/data.md)")
    if not Path(p.input).expanduser().exists():  # before the VAE loads (seconds to minutes)
        raise ConfigError(f"preprocess.input={p.input} does not exist: pass an image folder, zip, or latent folder")
    check_options(p.layout, p.on_error, folder_size=p.folder_size, shard_size=p.shard_size, batch_size=p.batch_size)
    needs_vae = not _is_latent_folder(p.input)
    vae = instantiate(data.vae) if needs_vae else None  # may fetch weights: after every cheap check
    shape = latent.expected_shape(data.get("latent_channels"), data.get("latent_size"))
    return preprocess(
        p.input, p.out, int(data.resolution), vae, layout=p.layout, folder_size=p.folder_size,
        shard_size=p.shard_size, batch_size=p.batch_size, num_workers=p.num_workers, device=p.device,
        on_error=p.on_error, seed=p.seed, limit=p.limit, num_classes=data.get("num_classes"),
        latent_shape=shape, part=p.part, num_parts=p.num_parts, progress=p.progress, images=p.get("images", True))


def cli(argv=None) -> dict:
    """`python -m dmf.data.preprocess`: the same function without Hydra."""
    ap = argparse.ArgumentParser(prog="python -m dmf.data.preprocess", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="image folder (class subfolders), zip, or latent folder")
    ap.add_argument("--out", required=True, help="output root: gets vae-sd/ and/or wds/")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="hub id or local AutoencoderKL folder; "
                    "'identity' keeps pixels")
    ap.add_argument("--layout", choices=LAYOUTS, default="npy")
    ap.add_argument("--folder-size", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    ap.add_argument("--seed", type=int, default=0, help="shard order")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke runs)")
    ap.add_argument("--num-classes", type=int, default=None)
    ap.add_argument("--part", type=int, default=None)
    ap.add_argument("--num-parts", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-images", action="store_true", help="latents only: no images/ folder, no image.png in "
                    "shards (REPA pretraining then cannot use the data)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    vae = None
    if not _is_latent_folder(a.input):
        from dmf.data.vae import SDVAE

        vae = IdentityVAE() if a.vae == "identity" else SDVAE(a.vae)
    return preprocess(a.input, a.out, a.resolution, vae, layout=a.layout, folder_size=a.folder_size,
                      shard_size=a.shard_size, batch_size=a.batch_size, num_workers=a.num_workers,
                      device=a.device, on_error=a.on_error, seed=a.seed, limit=a.limit,
                      num_classes=a.num_classes, part=a.part, num_parts=a.num_parts, progress=not a.no_progress,
                      images=not a.no_images)


if __name__ == "__main__":
    cli()
