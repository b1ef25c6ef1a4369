"""Modes: `python run.py mode=eval|sample|ref_stats ...` (each takes the whole composed config).

eval: generate eval.num_samples images per step count in eval.steps and score them against eval.ref_stats;
sample: the same generation, exporting PNG/npz instead of scoring; ref_stats: statistics of real images.
Outputs live under eval.out_dir (docs/eval.md); nothing existing is replaced unless eval.overwrite=true.
"""
import shutil
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dmf.build import build_network, build_sampler, build_vae, model_shape
from dmf.config.trained import follow_checkpoint
from dmf.core.errors import ConfigError, ResultExistsError
from dmf.core.files import write_json_atomic
from dmf.eval import dist as edist
from dmf.eval.generation.writers import NpzWriter, PngWriter
from dmf.config.launch import runs_here
from dmf.eval.jobs import StepJob, check_shared_out_dir, content_identity, plan_jobs
from dmf.eval.generation.loop import Plan, Renderer, run
from dmf.eval.generation.images import make_grid, save_png
from dmf.eval.paper import paper_fid
from dmf.eval.progress import say
from dmf.eval.paths import out_dir
from dmf.eval.reference.files import load_reference, save_reference
from dmf.eval.reference.build import reference_states
from dmf.eval.generation.precision import NETWORK_PRECISIONS
from dmf.eval.report import write_report
from dmf.eval.scoring.scorer import build_scorer
from dmf.eval.validate import check_table_folder, validate_eval
from dmf.models.attention import check_available
from dmf.models.hub import resolve_path


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


def check_evaluate(cfg: DictConfig, job: list[str], sweep: list) -> None:
    """Each job of a -m sweep of mode=eval or mode=sample, before the first one runs (dmf/config/launch.py)."""
    validate_eval(cfg, here=runs_here(job))
    check_table_folder(cfg.eval)
    check_shared_out_dir(cfg, job, sweep)


check_sample = check_evaluate


def check_ref_stats(cfg: DictConfig, job: list[str], sweep: list) -> None:
    validate_eval(cfg, here=runs_here(job))


def _generate(cfg: DictConfig, score: bool):
    validate_eval(cfg)
    follow_checkpoint(cfg)
    check_table_folder(cfg.eval)
    info = edist.init_distributed(cfg.eval.device)
    try:
        return _generate_all(cfg, score, info)
    finally:
        edist.shutdown(info)


def _resolve_reference(cfg: DictConfig, scorer, info, device):
    ec = cfg.eval
    if not scorer.needs_reference:
        return None, None
    if ec.ref_stats == "build":  # small datasets (digits): statistics of eval.ref_source, computed now
        ref_scorer = build_scorer([n for n, m in scorer.metrics.items() if m.needs_reference], ec.metric_defs,
                                  ec.extractors).to(device)
        states = reference_states(instantiate(ec.ref_source), ref_scorer, device, info, ec.batch_size, ec.num_workers,
                                  ec.ref_space, build_vae(cfg).to(device) if ec.ref_space == "latent" else None,
                                  ec.quantize, cfg.seed)
        return ref_scorer.reference(states), f"eval.ref_source ({ec.ref_source._target_})"
    ref = load_reference(ec.ref_stats) if ec.ref_stats else None
    return ref, ec.ref_stats


def _writers(step_dir: Path, exports: list[str]) -> list:
    return ([PngWriter(step_dir / "images")] if "png" in exports else []) + ([NpzWriter(step_dir)] if "npz" in exports else [])


def _write_json(path: Path, obj: dict):
    write_json_atomic(path, obj, indent=1, default=float)


def _generate_all(cfg: DictConfig, score: bool, info: edist.DistInfo):
    ec = cfg.eval
    check_available(cfg.model.get("attention", "auto"), info.device)
    root = Path(edist.broadcast_object(str(out_dir(cfg))))  # torchrun ranks may resolve different run dirs
    exports = _check_request(cfg, score)
    identity = edist.broadcast_object(content_identity(cfg, score) if info.is_main else None)
    samplers = {int(k): build_sampler(cfg, k) for k in (ec.steps if ec.steps else [cfg.sampler.steps])}
    plan = Plan(ec.num_samples, cfg.seed, model_shape(cfg), cfg.data.num_classes, ec.batch_size, ec.chunk_size,
                ec.labels, ec.quantize, ec.feature_batch_size)
    jobs = plan_jobs(cfg, plan, samplers, root, score, identity, exports)
    if ec.overwrite and info.is_main:
        for job in jobs:
            if job.dir.exists():
                say(f"eval.overwrite=true: removing {job.dir}")
                shutil.rmtree(job.dir)
    edist.barrier()
    for job in jobs:
        if job.finished is not None:
            say(f"{job.label}: already complete ({job.dir / 'result.json'}), reusing {job.finished['metrics']}"
                + (f"; writing the missing exports {job.missing_exports}" if job.missing_exports else ""))
    to_generate = [j for j in jobs if j.to_generate]
    export_only = [j for j in jobs if j.export_only]
    if not (to_generate or export_only):
        return _report(cfg, root, info)

    net = build_network(cfg, frozen=True).to(info.device)  # reads the checkpoint: a bad file fails before any feature network
    vae = build_vae(cfg)
    vae = vae.to(info.device) if isinstance(vae, torch.nn.Module) else vae

    def renderer(sampler):
        return Renderer(net, sampler, vae, info.device, NETWORK_PRECISIONS[ec.precision], tf32=ec.precision != "fp32",
                        source=f"ckpt={cfg.ckpt}", decode_precision=ec.decode_precision)

    scorer = ref = None
    if score and to_generate:
        scorer = build_scorer(ec.metrics, ec.metric_defs, ec.extractors).to(info.device)
        ref, ref_source = _resolve_reference(cfg, scorer, info, info.device)
        scorer.check_reference(ref, ref_source)
    for job in export_only:
        _export_missing(cfg, job, plan, renderer(job.sampler), info)
    for job in to_generate:
        _generate_job(cfg, job, plan, renderer(job.sampler), scorer, ref, identity, exports, info)
    return _report(cfg, root, info)


def _check_request(cfg: DictConfig, score: bool) -> list[str]:
    """Everything that can fail cheaply fails here, before the network is built or an image generated: what to
    export, what to score, and the weights and statistics files (a missing hf:// file fails in milliseconds
    offline). Returns the export formats."""
    ec = cfg.eval
    want_png = (not score) if ec.save_png is None else bool(ec.save_png)
    if not score and not (want_png or ec.save_npz):
        raise ConfigError("mode=sample exports images: set eval.save_png=true and/or eval.save_npz=true")
    if score and not ec.metrics:
        raise ConfigError("eval.metrics is empty: name at least one (e.g. eval.metrics=[fid]) or use mode=sample")
    if not cfg.get("ckpt"):
        raise ConfigError("this mode needs weights: pass ckpt=<path to .ckpt/.pt> or ckpt=hf://<owner>/<repo>/<file>")
    for key, uri in (("ckpt", cfg.ckpt), ("eval.ref_stats", ec.ref_stats if score and ec.ref_stats != "build" else None)):
        if uri:
            resolve_path(uri, key=key)
    return (["png"] if want_png else []) + (["npz"] if ec.save_npz else [])


def _export_missing(cfg: DictConfig, job: StepJob, plan: Plan, render: Renderer, info: edist.DistInfo):
    """The images are a pure function of the fingerprint: regenerate them for the new formats only, resumably
    (progress under exports_<formats>/), and record the formats in result.json."""
    label = f"{job.label} ({'+'.join(job.missing_exports)} export)"
    work = job.dir / f"exports_{'_'.join(job.missing_exports)}"
    run(plan, render, None, info, work, {**job.fingerprint, "exports": job.missing_exports},
        _writers(job.dir, job.missing_exports), cfg.eval.checkpoint_every_s, label)
    if info.is_main:
        exports = sorted(set(job.finished.get("exports", [])) | set(job.missing_exports))
        _write_json(job.dir / "result.json", {**job.finished, "exports": exports})
        shutil.rmtree(work, ignore_errors=True)
        say(f"{label}: written -> {job.dir}")
    edist.barrier()


def _generate_job(cfg: DictConfig, job: StepJob, plan: Plan, render: Renderer, scorer, ref, identity: dict,
                  exports: list[str], info: edist.DistInfo):
    ec = cfg.eval
    outcome = run(plan, render, scorer, info, job.dir, job.fingerprint, _writers(job.dir, exports),
                  ec.checkpoint_every_s, job.label)
    if info.is_main:
        metrics = scorer.compute(outcome.states, ref) if scorer is not None else {}
        n_grid = min(ec.grid_size, plan.num_samples)
        if n_grid:
            # in batches of the generation's size: a compiled network reuses its graph (another batch shape compiled
            # a second one, minutes for an XL on a card) and the grid shows the scored images to the bit
            size = min(plan.batch_size, plan.num_samples)
            indices = torch.arange(min(-(-n_grid // size) * size, plan.num_samples))
            images = torch.cat([render(plan, part)[0] for part in indices.split(size)])[:n_grid]
            save_png(make_grid(images), job.dir / "grid.png")
        result = {"sampler": job.sampler.name, "steps": job.steps, "num_samples": plan.num_samples, "metrics": metrics,
                  "paper_fid": paper_fid(ec.paper, job.steps), "images_per_s": outcome.images_per_s,
                  "seconds": outcome.seconds, "ckpt": str(cfg.ckpt), "ckpt_sha256": identity["ckpt"],
                  "ref_stats": str(ec.ref_stats) if scorer is not None else None,
                  "ref_stats_id": identity["ref_stats"], "exports": exports, "fingerprint": job.fingerprint,
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_json(job.dir / "result.json", result)
        say(f"{job.label}: {', '.join(f'{m}={v:.4f}' for m, v in metrics.items()) or 'images written'} -> {job.dir}")
    edist.barrier()


def _report(cfg: DictConfig, root: Path, info: edist.DistInfo):
    if not info.is_main:
        return None
    report = write_report(root, cfg.eval.paper, title=f"{cfg.model.name} {cfg.ckpt}")
    if report:
        say(f"table: {report['markdown']} (+ .csv)" + (f", plot: {report['plot']}" if report["plot"] else ""))
    return report


def _ref_stats(cfg: DictConfig, info: edist.DistInfo):
    ec = cfg.eval
    device = info.device
    target = Path(edist.broadcast_object(str(Path(ec.ref_out).expanduser())))
    if target.exists() and not ec.overwrite:
        raise ResultExistsError(f"{target} exists; pass eval.overwrite=true to replace it or choose another eval.ref_out")
    if target.suffix.lower() not in (".pkl", ".npz"):
        raise ConfigError(f"eval.ref_out={target} must end in .pkl (all metrics) or .npz (fid only)")
    if ec.ref_source is None:
        raise ConfigError("mode=ref_stats needs a dataset: eval/ref_source=image_folder eval.ref_source.path=<dir> "
                          "(or digits, webdataset, dataset)")
    scorer = build_scorer(ec.metrics, ec.metric_defs, ec.extractors, only_reference=True)
    if not scorer.metrics:
        raise ConfigError(f"none of eval.metrics={list(ec.metrics)} uses reference statistics (fid, fd_dinov2, pr do)")
    scorer.to(device)
    dataset = instantiate(ec.ref_source)
    vae = build_vae(cfg).to(device) if ec.ref_space == "latent" else None
    t0 = time.time()
    states = reference_states(dataset, scorer, device, info, ec.batch_size, ec.num_workers, ec.ref_space, vae,
                              ec.quantize, cfg.seed)
    if not info.is_main:
        return None
    ref = scorer.reference(states)
    save_reference(ref, target, overwrite=ec.overwrite)
    say(f"wrote {target} ({', '.join(ref)}; {time.time() - t0:.1f} s)")
    return target
