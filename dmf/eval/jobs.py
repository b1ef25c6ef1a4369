"""The job record of mode=eval / mode=sample: one per step count, naming where it writes, what its images are made
from (the fingerprint) and what an earlier run already left there."""
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from dmf.config.typed import override_key
from dmf.core.errors import ConfigError, ResultExistsError
from dmf.eval.content import content_hash
from dmf.eval.generation.loop import Plan
from dmf.eval.paths import container
from dmf.models.hub import resolve_path


@dataclass
class StepJob:
    steps: int
    sampler: object
    dir: Path
    fingerprint: dict
    finished: dict | None = None  # result.json of an earlier run with the same fingerprint
    missing_exports: list[str] = field(default_factory=list)  # formats asked for now that it did not write

    @property
    def label(self) -> str:
        return step_folder(self.sampler, self.steps)

    @property
    def to_generate(self) -> bool:
        return self.finished is None

    @property
    def export_only(self) -> bool:
        return self.finished is not None and bool(self.missing_exports)


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
    ident = {"ckpt": content_hash(resolve_path(cfg.ckpt, key="ckpt")), "ref_stats": None}
    if score and ec.ref_stats:
        ident["ref_stats"] = ("build: " + json.dumps(container(ec.ref_source), sort_keys=True, default=str)
                              if ec.ref_stats == "build" else "sha256:" + content_hash(resolve_path(ec.ref_stats, key="eval.ref_stats")))
    return ident


def finished_result(step_dir: Path, fp: dict, overwrite: bool) -> dict | None:
    """A finished result with the same settings is reused; with other settings it is an error, never replaced."""
    result = step_dir / "result.json"
    if not result.exists() or overwrite:
        return None
    old = json.loads(result.read_text())
    if json.dumps(old.get("fingerprint"), sort_keys=True, default=str) == json.dumps(fp, sort_keys=True, default=str):
        return old
    old_fp = old.get("fingerprint") or {}
    diff = sorted(k for k in set(old_fp) | set(fp) if old_fp.get(k) != fp.get(k))
    raise ResultExistsError(f"{result} holds a result made with other settings (differ: {', '.join(diff)}). Fix: choose "
                            f"a new eval.out_dir, or pass eval.overwrite=true to replace it.")


def plan_jobs(cfg: DictConfig, plan: Plan, samplers: dict, root: Path, score: bool, identity: dict,
              exports: list[str]) -> list[StepJob]:
    jobs = []
    for steps, sampler in samplers.items():
        step_dir = root / step_folder(sampler, steps)
        fp = fingerprint(cfg, plan, steps, score, identity)
        old = finished_result(step_dir, fp, cfg.eval.overwrite)
        missing = [e for e in exports if old is not None and e not in old.get("exports", [])]
        jobs.append(StepJob(steps, sampler, step_dir, fp, old, missing))
    return jobs


def step_folder(sampler, steps: int) -> str:
    """The folder of one step count's result under eval.out_dir."""
    return f"{sampler.name}_{steps}"


def typed_out_dir(job: list[str]) -> Path | None:
    """The folder `eval.out_dir=<path>` on a job's command line names; None when not typed, or typed with an
    interpolation (e.g. ${seed}), whose folder may differ per job."""
    typed = [o.split("=", 1)[1] for o in job if override_key(o) == "eval.out_dir"]
    return Path(typed[-1]).expanduser().absolute() if typed and "${" not in typed[-1] else None


def check_shared_out_dir(cfg: DictConfig, job: list[str], sweep: list[tuple[list[str], DictConfig]]) -> None:
    """Jobs of a -m sweep that would write the same <sampler>_<steps> folder of one typed eval.out_dir: the later one
    stops on the earlier one's result (other settings), and eval.overwrite=true would delete it. Jobs that write
    other folders of it (a sampler sweep into one table) are fine."""
    from dmf.build import build_sampler

    def folders(c):
        return {step_folder(build_sampler(c, k), int(k)) for k in (c.eval.steps or [c.sampler.steps])}

    if (root := typed_out_dir(job)) is None:
        return
    for other, other_cfg in sweep:
        if other is job or typed_out_dir(other) != root or not (both := folders(cfg) & folders(other_cfg)):
            continue
        differ = sorted(set(job) ^ set(other))
        raise ConfigError(f"eval.out_dir={root} is typed for sweep jobs that differ in {', '.join(differ)}, and "
                          f"they would write the same {', '.join(sorted(both))} in it: the later one "
                          f"stops on the earlier's result, and eval.overwrite=true would delete it. Fix: leave "
                          f"eval.out_dir unset (each job writes its own <run dir>/eval), or put the swept key in the "
                          f"folder, e.g. eval.out_dir={root}/<value>")
