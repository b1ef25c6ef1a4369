"""mode=pipeline: a multi-stage recipe (e.g. the digits default) over the generic modes.

Each stage is an ordinary experiment trained by mode=train, and each table row is an ordinary mode=eval run on
the stage's checkpoint, so a recipe has no code path of its own. The recipe (conf/experiment/digits.yaml):

    pipeline:
      stages:                       # in order; `init_from` names the stage whose checkpoint initialises this one
        flow: {experiment: digits_flow}
        dmf: {experiment: digits_dmf, init_from: flow}
      evaluate:                     # mode=eval of a stage at these step counts (sampler: the stage's own, or named)
        - {stage: dmf, steps: [1, 2, 4]}

The parent run's command-line overrides reach every stage that accepts them: a stage takes an override when its
own config composes and validates with it (`guidance.omega=0.6` reaches the DMF stage; the flow stage's
guidance=none has no omega). An override no stage accepts is an error. A stage trains in
`<store>/<stage>-<key>/` (the store: the run dir unless said below), where the key hashes its composed training config and the content of the checkpoint
it starts from, so changing an input retrains that stage and every stage after it, and a finished stage with the
same key is reused. In a sweep (-m) the stages live in `<sweep dir>/stages/`, shared by its jobs, so a stage no
swept key reaches (the flow stage of an omega sweep) trains once; `pipeline.stage_store=<dir>` shares them across
runs. A lock per stage makes concurrent jobs (SLURM) wait for the one that trains or evaluates it.
"""
import hashlib
import json
import logging
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dmf.config import override_key, validate, validate_typed, without_repeats
from dmf.core.errors import ConfigError
from dmf.core.files import folder_lock, write_json_atomic, write_text_atomic
from dmf.core.options import check_known
from dmf.core.launch import leads_launch
from dmf.eval.content import content_hash
from dmf.eval.report import markdown_table
from dmf.models.hub import resolve_path

log = logging.getLogger("dmf.pipeline")

# keys that only concern the parent run
OWN_KEYS = ("experiment", "mode", "pipeline", "hydra", "run_dir")
# keys the recipe sets for each stage itself: typed for the whole pipeline they would be ignored, so they are refused
STAGE_KEYS = {
    "ckpt": "a pipeline gives each stage its checkpoint: pipeline.stages.flow.ckpt=<file> uses that flow model "
            "instead of training one (the DMF stage starts from it), pipeline.stages.dmf.ckpt=<file> skips DMF "
            "training; or train one stage from it: python run.py mode=train experiment=digits_dmf ckpt=<file>",
    "resume": "each stage resumes by itself from <stage dir>/checkpoints/last.ckpt when it was interrupted, and a "
              "finished stage is reused; to train a stage anew, use another run dir or remove its stage folder",
    "eval.steps": "the recipe scores each stage at its own step counts (pipeline.evaluate, e.g. "
                  "\"pipeline.evaluate=[{stage: dmf, steps: [1, 8]}]\"); or score a stage's checkpoint yourself: "
                  "python run.py mode=eval ckpt=<run_dir>/dmf-<key>/checkpoints/last.ckpt eval.steps=[8]",
    "eval.out_dir": "the recipe writes each stage's results beside its checkpoint (<stage dir>/eval/); run_dir=<folder> "
                    "moves the whole run",
}
STAGE_KEYS["sampler.steps"] = STAGE_KEYS["eval.steps"]
# parts of a stage's config that do not change its training (evaluation settings)
NOT_TRAINING = ("run_dir", "ckpt", "mode", "pipeline", "sampler", "eval", "resume")


def parent_overrides(cfg: DictConfig) -> list[str]:
    """The command-line overrides of this run (of this job, in a sweep), minus the recipe's own keys."""
    if cfg.pipeline.get("overrides") is not None:  # explicit (tests, or calling run() from Python)
        overrides = list(cfg.pipeline.overrides)
    else:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for o in overrides:
        if override_key(o) in STAGE_KEYS:
            raise ConfigError(f"{o}: {STAGE_KEYS[override_key(o)]}")
    return [o for o in overrides if override_key(o).replace("/", ".").split(".")[0] not in OWN_KEYS]


def quoted(path) -> str:
    """A path as an override value: sweep folders are named like `guidance.omega=0.6,sampler=euler`."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def compose_stage(experiment: str, overrides: list[str]) -> DictConfig:
    return compose(config_name="config", overrides=[f"experiment={experiment}", *overrides])


def accepted(experiment: str, overrides: list[str], evaluated: bool = True) -> list[str]:
    """The overrides that this stage's config composes and validates with, and reads in training or, when a row
    evaluates the stage, in its mode=eval (each tried on top of the ones taken): a key the stage would not read, e.g.
    the (t, r) proposal's time.P_mean_r for the flow stage, would only change its identity and retrain it. Passes
    repeat until none is taken, so that the order typed does not matter (`model.depth=3 model.dmf_depth=2`: depth 3
    fits only once dmf_depth 2 is in); typed order is kept."""
    modes = ["mode=train"] + (["mode=eval"] if evaluated else [])
    taken, progress = set(), True
    while progress:
        progress = False
        for i, o in enumerate(overrides):
            trial = [overrides[j] for j in sorted(taken | {i})]
            if i not in taken and any(reads(experiment, trial, o, mode) for mode in modes):
                taken.add(i)
                progress = True
    return [overrides[i] for i in sorted(taken)]


def reads(experiment: str, trial: list[str], override: str, mode: str) -> bool:
    """Whether the stage composed with `trial` validates in `mode` and reads `override` there (the others of the
    trial were taken for training or evaluation: a mode reads only its own)."""
    try:
        stage = compose_stage(experiment, [*trial, mode])
        validate(stage)
        validate_typed(stage, [override])
    except Exception:  # noqa: BLE001 -- composition, type and validation errors all mean "not for this stage"
        return False
    return True


def short_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def training_identity(stage_cfg: DictConfig, parent_sha: str | None) -> dict:
    """What a stage's weights depend on: its config (unresolved, so run-dir paths do not enter) minus evaluation
    settings, and the content of the checkpoint it starts from."""
    cfg = OmegaConf.to_container(stage_cfg, resolve=False)
    return {"config": {k: v for k, v in cfg.items() if k not in NOT_TRAINING}, "init_sha256": parent_sha}


def stage_store(cfg: DictConfig) -> Path:
    """Where stages train: pipeline.stage_store when set; in a sweep, <sweep dir>/stages; else the run dir."""
    if cfg.pipeline.get("stage_store"):
        return Path(cfg.pipeline.stage_store).expanduser()
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir) / "stages"
    return Path(cfg.run_dir)


def check_required(stages: DictConfig, taken: dict[str, list[str]]) -> None:
    """The values every stage that trains requires (e.g. guidance=distill's teacher) and its attention kernel, before
    the first stage trains: a later stage must not fail after the earlier ones have run. The checkpoint a stage
    starts from is the recipe's to give."""
    from dmf.train.preflight import PreflightError, check_mandatory
    from dmf.train.strategy import check_jvp_attention

    for name, spec in stages.items():
        if spec.get("ckpt"):
            continue  # not trained
        given = ["ckpt=from_an_earlier_stage"] if spec.get("init_from") else []
        stage = compose_stage(spec.experiment, [*taken[name], *spec.get("overrides", []), *given])
        try:
            check_mandatory(stage)
            check_jvp_attention(stage)
        except (PreflightError, ConfigError) as err:
            raise ConfigError(f"stage {name}: {err}") from None


def check_lineage(stages: DictConfig, taken: dict[str, list[str]]) -> None:
    """A stage that starts from an earlier one builds a network the earlier one's weights fit, before the first stage
    trains: an override only one stage takes (model.name=DMFT-T/4, which the flow stage's SiT refuses) failed at
    the later stage's load, after the earlier one had trained. Built on the meta device: no memory, no weights."""
    import torch
    from hydra.utils import instantiate

    from dmf.models.checkpoint import ARCHITECTURE_KEY, CheckpointMismatch, architecture, check_architecture

    nets = {}
    for name, spec in stages.items():
        with torch.device("meta"):
            nets[name] = instantiate(compose_stage(spec.experiment, [*taken[name], *spec.get("overrides", [])]).model)
        parent = spec.get("init_from")
        if parent in nets and not spec.get("ckpt") and not stages[parent].get("ckpt"):
            try:
                check_architecture(nets[name], {ARCHITECTURE_KEY: architecture(nets[parent])},
                                   where=f"stage {parent}'s checkpoint")
            except CheckpointMismatch as err:
                mismatch = str(err).split("; its weights")[0]
                raise ConfigError(f"stage {name} cannot start from stage {parent}: {mismatch}. An override reached one "
                                  f"of the two only. Fix: give each stage its own value ('pipeline.stages.<stage>."
                                  f"overrides=[\"key=value\"]'), e.g. model.name of a SiT for the flow stage") from None


def run_stage(name: str, spec: DictConfig, overrides: list[str], store: Path, parent_ckpt: Path | None) -> Path:
    """Train one stage (or reuse it when finished with the same key, or load spec.ckpt); returns its checkpoint."""
    if spec.get("ckpt"):
        log.info(f"stage {name}: using pipeline.stages.{name}.ckpt={spec.ckpt}")
        return Path(spec.ckpt)
    from dmf.train.reuse import train_or_reuse

    extra = [f"ckpt={quoted(parent_ckpt)}"] if parent_ckpt else []
    if spec.get("max_steps"):
        extra.append(f"trainer.max_steps={spec.max_steps}")
    stage_overrides = [*overrides, *extra]
    stage_cfg = compose_stage(spec.experiment, stage_overrides)
    validate(stage_cfg)
    identity = training_identity(stage_cfg, content_hash(parent_ckpt) if parent_ckpt else None)
    stage_dir = store / f"{name}-{short_hash(identity)}"
    OmegaConf.update(stage_cfg, "run_dir", str(stage_dir))
    log.info(f"stage {name}: python run.py mode=train experiment={spec.experiment} "
             f"{' '.join(without_repeats(stage_overrides))} "
             f"run_dir={stage_dir}")

    def stale(last: Path, differences: list[str]) -> str:  # e.g. trained further by hand (mode=train run_dir=<stage>)
        return (f"stage {name}: {last} was trained with other values than its folder's key stands for:\n  "
                + "\n  ".join(differences) + f"\nFix: move {stage_dir} away to retrain the stage, or use that "
                f"checkpoint as it is: pipeline.stages.{name}.ckpt={last}")

    record = json.dumps({"stage": name, "experiment": spec.experiment, "overrides": stage_overrides, **identity},
                        indent=1, default=str)
    return train_or_reuse(stage_cfg, "stage.json", record, stale,
                          say=lambda _: log.info(f"stage {name}: finished earlier with the same config and parent, "
                                                 f"reusing {stage_dir / 'checkpoints' / 'last.ckpt'}"))


def compose_row(row: DictConfig, spec: DictConfig, overrides: list[str], ckpt: Path | None) -> DictConfig:
    """The mode=eval config of an evaluation row (ckpt: the stage's checkpoint; None before it is trained)."""
    extra = [f"sampler={row.sampler}"] if row.get("sampler") else []
    extra += [f"ckpt={quoted(ckpt)}"] if ckpt else []
    return compose_stage(spec.experiment, [*overrides, *extra, "mode=eval",
                                           f"eval.steps=[{','.join(str(int(s)) for s in row.steps)}]"])


def check_rows(cfg: DictConfig, taken: dict[str, list[str]]) -> None:
    """Each evaluation row's eval config (its step counts, the eval values typed), before the first stage trains: a
    bad one stopped the pipeline only when scoring began, after training."""
    from dmf.eval.validate import check_steps, validate_eval

    stages = cfg.pipeline.stages
    for i, row in enumerate(cfg.pipeline.evaluate):
        if row.stage not in stages:
            raise ConfigError(f"pipeline.evaluate row {dict(row)} names stage {row.stage!r}, not one of {list(stages)}")
        check_steps(row.get("steps"), f"pipeline.evaluate[{i}].steps")
        spec = stages[row.stage]
        row_cfg = compose_row(row, spec, [*taken[row.stage], *spec.get("overrides", [])], None)
        OmegaConf.update(row_cfg, "run_dir", str(cfg.run_dir))
        try:
            validate(row_cfg)
            validate_eval(row_cfg)
        except ConfigError as err:
            raise ConfigError(f"scoring stage {row.stage} (pipeline.evaluate[{i}]): {err}") from None


def evaluate_stage(row: DictConfig, spec: DictConfig, overrides: list[str], ckpt: Path) -> list[dict]:
    """mode=eval on one stage's checkpoint, at the row's step counts; returns one record per step count."""
    from dmf.eval.entry import evaluate

    cfg = compose_row(row, spec, overrides, ckpt)
    # results live beside the checkpoint, one folder per evaluation setting (mode=eval refuses to mix settings)
    setting = {k: OmegaConf.to_container(cfg[k], resolve=False) for k in ("sampler", "eval")}
    setting["seed"] = cfg.seed
    setting["eval"].pop("out_dir", None)
    out = ckpt.parent.parent / "eval" / f"{OmegaConf.select(cfg, 'sampler._target_').rsplit('.', 1)[-1]}-" \
                                        f"{short_hash(setting)}"
    OmegaConf.update(cfg, "run_dir", str(ckpt.parent.parent))
    OmegaConf.update(cfg, "eval.out_dir", str(out))
    validate(cfg)
    with folder_lock(ckpt.parent.parent):
        evaluate(cfg)
    if not leads_launch():  # rank 0 writes the results; another rank could read them before they exist
        return []
    records = []
    for k in row.steps:
        result = json.loads(next(out.glob(f"*_{int(k)}/result.json")).read_text())
        records.append({"stage": row.stage, "sampler": result["sampler"], "steps": int(k), **result["metrics"],
                        "grid": str(next(out.glob(f"*_{int(k)}/grid.png"), "")), "ckpt": str(ckpt)})
    return records


def results_table(rows: list[dict]) -> str:
    metrics = [k for k in rows[0] if k not in ("stage", "sampler", "steps", "grid", "ckpt")] if rows else []
    cells = [[r["stage"], r["sampler"], str(r["steps"]),
              *(f"{100 * r[m]:.1f} %" if m.endswith("acc") else f"{r[m]:.2f}" for m in metrics)] for r in rows]
    return markdown_table(["stage", "sampler", "steps (NFE)", *metrics], cells)


# what a stage and an evaluation row may say (a misspelt init_from would train the stage from scratch)
STAGE_OPTIONS = ("experiment", "init_from", "max_steps", "ckpt", "overrides")
ROW_OPTIONS = ("stage", "steps", "sampler")


def check_options(pipeline: DictConfig) -> None:
    """Before the first stage trains: the stages' and rows' options, a stage's max_steps and checkpoint file."""
    places = [(f"pipeline.stages.{n}", s, STAGE_OPTIONS) for n, s in pipeline.stages.items()]
    places += [(f"pipeline.evaluate[{i}]", r, ROW_OPTIONS) for i, r in enumerate(pipeline.evaluate)]
    for where, node, known in places:
        check_known(where, node, known)
    for name, spec in pipeline.stages.items():
        steps = spec.get("max_steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"pipeline.stages.{name}.max_steps={steps!r} must be a positive integer (or null: the "
                              f"experiment's trainer.max_steps)")
        if spec.get("ckpt"):
            resolve_path(spec.ckpt, key=f"pipeline.stages.{name}.ckpt")


def checked(cfg: DictConfig) -> dict[str, list[str]]:
    """Every check of the recipe that can fail before the first stage trains; returns the command-line overrides
    each stage takes."""
    if not (cfg.get("pipeline") or {}).get("stages"):
        raise ConfigError("mode=pipeline runs a recipe experiment with pipeline.stages (experiment=digits, the "
                          "default); a one-stage experiment trains with mode=train")
    check_options(cfg.pipeline)
    inherited = parent_overrides(cfg)
    stages = cfg.pipeline.stages
    taken = {name: accepted(spec.experiment, inherited, any(r.stage == name for r in cfg.pipeline.evaluate))
             for name, spec in stages.items()}
    unused = [o for o in inherited if not any(o in t for t in taken.values())]
    if unused:
        raise ConfigError(f"overrides {unused} apply to no stage of this pipeline ({', '.join(stages)}): each stage "
                         f"rejects them (a key its config lacks, or an invalid combination); check the key names")
    check_required(stages, taken)
    check_lineage(stages, taken)
    check_rows(cfg, taken)
    return taken


def check_run(cfg: DictConfig, job: list[str], sweep: list) -> None:
    """Each job of a -m sweep of mode=pipeline, before the first one trains (dmf/config/launch.py): its command line
    is the job's overrides."""
    if cfg.get("pipeline") is not None and cfg.pipeline.get("overrides") is None:
        OmegaConf.update(cfg, "pipeline.overrides", job, force_add=True)
    checked(cfg)


def run(cfg: DictConfig) -> list[dict]:
    run_dir = Path(cfg.run_dir)
    taken = checked(cfg)
    stages = cfg.pipeline.stages
    for name in stages:
        log.info(f"stage {name} takes {taken[name] or 'no overrides'} from the command line")
    ckpts, store = {}, stage_store(cfg)
    for name, spec in stages.items():
        parent = spec.get("init_from")
        if parent and parent not in ckpts:
            raise ConfigError(f"pipeline.stages.{name}.init_from={parent} must name an earlier stage ({list(ckpts)})")
        ckpts[name] = run_stage(name, spec, [*taken[name], *spec.get("overrides", [])], store,
                                ckpts.get(parent) if parent else None)
    rows = []
    for row in cfg.pipeline.evaluate:
        spec = stages[row.stage]
        rows += evaluate_stage(row, spec, [*taken[row.stage], *spec.get("overrides", [])], ckpts[row.stage])
    if not leads_launch():
        return rows
    table = results_table(rows)
    write_text_atomic(run_dir / "results.md", f"# {cfg.pipeline.title}\n\n{table}\n")
    write_json_atomic(run_dir / "results.json", {"rows": rows, "stages": {n: str(Path(c).parent.parent) for n, c in ckpts.items()}},
                      indent=1, default=float)
    grids = "\n".join(f"  {r['grid']}" for r in rows if r["grid"])
    print(f"\n{table}\n\n[dmf] results: {run_dir / 'results.md'} (+ results.json)\n[dmf] sample grids:\n{grids}\n"
          f"[dmf] stages: {', '.join(str(Path(c).parent.parent) for c in ckpts.values())}", flush=True)
    return rows
