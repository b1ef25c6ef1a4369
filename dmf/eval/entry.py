"""Modes: `python run.py mode=eval|sample|ref_stats ...` (each takes the whole composed config).

eval: generate eval.num_samples images per step count in eval.steps and score them against eval.ref_stats;
sample: the same generation, exporting PNG/npz instead of scoring; ref_stats: statistics of real images.
Outputs live under eval.out_dir (docs/eval.md); nothing existing is replaced unless eval.overwrite=true.
"""
import json
import shutil
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dmf.build import build_network, build_sampler, build_vae, model_shape
from dmf.core.files import write_json_atomic
from dmf.eval import dist as edist
from dmf.eval.content import content_hash
from dmf.eval.export import NpzWriter, PngWriter
from dmf.eval.generate import Plan, Renderer, run
from dmf.eval.images import make_grid, save_png
from dmf.eval.paper import paper_fid
from dmf.eval.paths import container, out_dir
from dmf.eval.ref_stats import load_reference, save_reference
from dmf.eval.reference import reference_states
from dmf.eval.report import write_report
from dmf.eval.scorer import build_scorer
from dmf.eval.validate import validate_eval
from dmf.models.hub import resolve_path

PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def log(msg: str):
    print(f"[dmf eval] {msg}", flush=True)


def evaluate(cfg: DictConfig):
    return _generate(cfg, score=True)


def sample(cfg: DictConfig):
    return _generate(cfg, score=False)


def ref_stats(cfg: DictConfig):
    validate_eval(cfg)
    info = edist.init_distributed(cfg.eval.device)
    try:
        return _ref_stats(cfg, info)
    finally:
        edist.shutdown(info)


def _generate(cfg: DictConfig, score: bool):
    validate_eval(cfg)
    info = edist.init_distributed(cfg.eval.device)
    try:
        return _generate_all(cfg, score, info)
    finally:
        edist.shutdown(info)


def fingerprint(cfg: DictConfig, plan: Plan, steps: int, score: bool, identity: dict) -> dict:
    """Everything that changes the images or the numbers (not batch size, world size, output formats or where the
    files lie): the weights and reference statistics enter by content hash (`identity`)."""
    ec = cfg.eval
    fp = {
        "mode": "eval" if score else "sample", "num_samples": plan.num_samples, "seed": plan.seed,
        "chunk_size": plan.chunk_size, "feature_batch_size": plan.feature_batch_size, "labels": plan.labels,
        "quantize": plan.quantize, "shape": list(plan.shape), "num_classes": plan.num_classes,
        "ckpt_sha256": identity["ckpt"], "model": container(cfg.model),
        "sampler": {**container(cfg.sampler), "steps": steps}, "vae": container(cfg.data.vae),
        "precision": ec.precision, "decode_precision": ec.decode_precision,
    }
    if score:
        metrics = list(ec.metrics)
        fp["metrics"] = {n: container(ec.metric_defs[n]) for n in metrics}
        fp["extractors"] = {e: {k: v for k, v in container(ec.extractors[e]).items() if k != "download"}
                            for e in sorted({ec.metric_defs[n].extractor for n in metrics})}
        fp["ref_stats"] = identity["ref_stats"]
    return fp


def content_identity(cfg: DictConfig, score: bool) -> dict:
    """Content hashes of the weights and of the reference-statistics file (paths may point at new content)."""
    ec = cfg.eval
    ident = {"ckpt": content_hash(resolve_path(cfg.ckpt)), "ref_stats": None}
    if score and ec.ref_stats:
        ident["ref_stats"] = ("build: " + json.dumps(container(ec.ref_source), sort_keys=True, default=str)
                              if ec.ref_stats == "build" else "sha256:" + content_hash(resolve_path(ec.ref_stats)))
    return ident


def _resolve_reference(cfg: DictConfig, scorer, info, device):
    ec = cfg.eval
    if not scorer.needs_reference:
        return None, None
    if ec.ref_stats == "build":  # small datasets (digits): statistics of eval.ref_source, computed now
        ref_scorer = build_scorer([n for n, m in scorer.metrics.items() if m.needs_reference], ec.metric_defs,
                                  ec.extractors).to(device)
        states = reference_states(instantiate(ec.ref_source), ref_scorer, device, info, ec.batch_size, 0,
                                  ec.ref_space, build_vae(cfg).to(device) if ec.ref_space == "latent" else None,
                                  ec.quantize, cfg.seed, log)
        return ref_scorer.reference(states), f"eval.ref_source ({ec.ref_source._target_})"
    ref = load_reference(ec.ref_stats) if ec.ref_stats else None
    return ref, ec.ref_stats


def _existing(step_dir: Path, fp: dict, overwrite: bool) -> dict | None:
    """A finished result with the same settings is reused; with other settings it is an error, never replaced."""
    result = step_dir / "result.json"
    if not result.exists() or overwrite:
        return None
    old = json.loads(result.read_text())
    if json.dumps(old.get("fingerprint"), sort_keys=True, default=str) == json.dumps(fp, sort_keys=True, default=str):
        return old
    old_fp = old.get("fingerprint") or {}
    diff = sorted(k for k in set(old_fp) | set(fp) if old_fp.get(k) != fp.get(k))
    raise FileExistsError(f"{result} holds a result made with other settings (differ: {', '.join(diff)}). Fix: choose "
                          f"a new eval.out_dir, or pass eval.overwrite=true to replace it.")


def _exports(want_png: bool, want_npz: bool) -> list[str]:
    return (["png"] if want_png else []) + (["npz"] if want_npz else [])


def _writers(step_dir: Path, exports: list[str]) -> list:
    return ([PngWriter(step_dir / "images")] if "png" in exports else []) + ([NpzWriter(step_dir)] if "npz" in exports else [])


def _write_json(path: Path, obj: dict):
    write_json_atomic(path, obj, indent=1, default=float)


def _generate_all(cfg: DictConfig, score: bool, info: edist.DistInfo):
    ec = cfg.eval
    device = info.device
    root = Path(edist.broadcast_object(str(out_dir(cfg))))  # torchrun ranks may resolve different run dirs
    steps_list = [int(s) for s in (ec.steps if ec.steps else [cfg.sampler.steps])]
    want_png = (not score) if ec.save_png is None else bool(ec.save_png)
    if not score and not (want_png or ec.save_npz):
        raise ValueError("mode=sample exports images: set eval.save_png=true and/or eval.save_npz=true")
    if score and not ec.metrics:
        raise ValueError("eval.metrics is empty: name at least one (e.g. eval.metrics=[fid]) or use mode=sample")
    wanted = _exports(want_png, bool(ec.save_npz))

    # Everything that can fail cheaply fails here, before the network is built or an image generated:
    # weights and statistics files first (a missing hf:// file fails in milliseconds offline), then the checkpoint
    # is read (as data), and only then the feature networks and reference statistics are built.
    if not cfg.get("ckpt"):
        raise ValueError("this mode needs weights: pass ckpt=<path to .ckpt/.pt> or ckpt=hf://<owner>/<repo>/<file>")
    for key, uri in (("ckpt", cfg.ckpt), ("eval.ref_stats", ec.ref_stats if score and ec.ref_stats != "build" else None)):
        try:
            if uri:
                resolve_path(uri)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{key}: {err}") from None
    identity = edist.broadcast_object(content_identity(cfg, score) if info.is_main else None)
    samplers = {k: build_sampler(cfg, k) for k in steps_list}
    plan = Plan(ec.num_samples, cfg.seed, model_shape(cfg), cfg.data.num_classes, ec.batch_size, ec.chunk_size,
                ec.labels, ec.quantize, ec.feature_batch_size)
    jobs = []  # (steps, sampler, step_dir, fingerprint, finished result or None, exports still missing)
    for k, sampler in samplers.items():
        step_dir = root / f"{sampler.name}_{k}"
        fp = fingerprint(cfg, plan, k, score, identity)
        old = _existing(step_dir, fp, ec.overwrite)
        missing = [e for e in wanted if old is not None and e not in old.get("exports", [])]
        jobs.append((k, sampler, step_dir, fp, old, missing))
    todo = [j for j in jobs if j[4] is None]
    export_only = [j for j in jobs if j[4] is not None and j[5]]
    if ec.overwrite and info.is_main:
        for _, _, step_dir, _, _, _ in jobs:
            if step_dir.exists():
                log(f"eval.overwrite=true: removing {step_dir}")
                shutil.rmtree(step_dir)
    edist.barrier()
    for k, _, step_dir, _, old, missing in jobs:
        if old is not None and info.is_main:
            log(f"{step_dir.name}: already complete ({step_dir / 'result.json'}), reusing {old['metrics']}"
                + (f"; writing the missing exports {missing}" if missing else ""))

    if todo or export_only:
        net = build_network(cfg, frozen=True).to(device)  # reads the checkpoint: a bad file fails before any feature network
        vae = build_vae(cfg)
        vae = vae.to(device) if isinstance(vae, torch.nn.Module) else vae
    scorer = ref = None
    if score and todo:
        scorer = build_scorer(ec.metrics, ec.metric_defs, ec.extractors).to(device)
        ref, ref_source = _resolve_reference(cfg, scorer, info, device)
        scorer.check_reference(ref, ref_source)

    def renderer(sampler):
        return Renderer(net, sampler, vae, device, PRECISIONS[ec.precision], tf32=ec.precision != "fp32",
                        source=f"ckpt={cfg.ckpt}", decode_precision=ec.decode_precision)

    for k, sampler, step_dir, fp, old, missing in export_only:
        # the images are a pure function of the fingerprint: regenerate them for the new formats only, resumably
        # (progress under exports_<formats>/), and record the formats in result.json
        label = f"{sampler.name}_{k} ({'+'.join(missing)} export)"
        work = step_dir / f"exports_{'_'.join(missing)}"
        run(plan, renderer(sampler), None, info, work, {**fp, "exports": missing}, _writers(step_dir, missing),
            ec.checkpoint_every_s, label, log)
        if info.is_main:
            _write_json(step_dir / "result.json", {**old, "exports": sorted(set(old.get("exports", [])) | set(missing))})
            shutil.rmtree(work, ignore_errors=True)
            log(f"{label}: written -> {step_dir}")
        edist.barrier()
    for k, sampler, step_dir, fp, _, _ in todo:
        label = f"{sampler.name}_{k}"
        render = renderer(sampler)
        outcome = run(plan, render, scorer, info, step_dir, fp, _writers(step_dir, wanted), ec.checkpoint_every_s,
                      label, log)
        if info.is_main:
            metrics = scorer.compute(outcome.states, ref) if score else {}
            n_grid = min(ec.grid_size, plan.num_samples)
            if n_grid:
                images, _ = render(plan, torch.arange(n_grid))
                save_png(make_grid(images), step_dir / "grid.png")
            result = {"sampler": sampler.name, "steps": k, "num_samples": plan.num_samples, "metrics": metrics,
                      "paper_fid": paper_fid(ec.paper, k), "images_per_s": outcome.images_per_s,
                      "seconds": outcome.seconds, "ckpt": str(cfg.ckpt), "ckpt_sha256": identity["ckpt"],
                      "ref_stats": str(ec.ref_stats) if score else None, "ref_stats_id": identity["ref_stats"],
                      "exports": wanted, "fingerprint": fp, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            _write_json(step_dir / "result.json", result)
            log(f"{label}: {', '.join(f'{m}={v:.4f}' for m, v in metrics.items()) or 'images written'} -> {step_dir}")
        edist.barrier()
    if not info.is_main:
        return None
    report = write_report(root, ec.paper, title=f"{cfg.model.name} {cfg.ckpt}")
    if report:
        log(f"table: {report['markdown']} (+ .csv)" + (f", plot: {report['plot']}" if report["plot"] else ""))
    return report


def _ref_stats(cfg: DictConfig, info: edist.DistInfo):
    ec = cfg.eval
    device = info.device
    target = Path(edist.broadcast_object(str(Path(ec.ref_out).expanduser())))
    if target.exists() and not ec.overwrite:
        raise FileExistsError(f"{target} exists; pass eval.overwrite=true to replace it or choose another eval.ref_out")
    if target.suffix.lower() not in (".pkl", ".npz"):
        raise ValueError(f"eval.ref_out={target} must end in .pkl (all metrics) or .npz (fid only)")
    if ec.ref_source is None:
        raise ValueError("mode=ref_stats needs a dataset: eval/ref_source=image_folder eval.ref_source.path=<dir> "
                         "(or digits, webdataset, dataset)")
    scorer = build_scorer(ec.metrics, ec.metric_defs, ec.extractors, only_reference=True)
    if not scorer.metrics:
        raise ValueError(f"none of eval.metrics={list(ec.metrics)} uses reference statistics (fid, fd_dinov2, pr do)")
    scorer.to(device)
    dataset = instantiate(ec.ref_source)
    vae = build_vae(cfg).to(device) if ec.ref_space == "latent" else None
    t0 = time.time()
    states = reference_states(dataset, scorer, device, info, ec.batch_size, ec.num_workers, ec.ref_space, vae,
                              ec.quantize, cfg.seed, log)
    if not info.is_main:
        return None
    ref = scorer.reference(states)
    save_reference(ref, target, overwrite=ec.overwrite)
    log(f"wrote {target} ({', '.join(ref)}; {time.time() - t0:.1f} s)")
    return target
