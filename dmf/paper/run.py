"""mode=paper_row: one row of a paper table. Training rows train (from scratch, from a checkpoint, or from a
stage the table trains once and its rows share), then evaluate at the table's NFEs; eval rows only evaluate.

Each part is an ordinary experiment composed with Hydra's compose API from the row's overrides plus the keys typed
on the command line (`python run.py -m paper=digits_ablation trainer.max_steps=50` reaches every stage that has
trainer.max_steps), so a row runs exactly what `python run.py <its overrides>` would. The job folder
(<paper.root>/<row>) holds the training run, eval/ and paper_row.json, which mode=collect reads.
"""
import hashlib
import json
import subprocess
import time
from pathlib import Path

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dmf.config import override_key, validate, without_repeats
from dmf.core.errors import ConfigError
from dmf.core.files import write_json_atomic
from dmf.core.launch import leads_launch
from dmf.paper.spec import RESULT_FILE, paper_values, row_overrides, row_spec, table_root

# command-line keys that belong to the launch, not to the stages (each row names its own experiment)
OWN_KEYS = ("paper", "mode", "hydra", "experiment")
# keys each row sets itself: typed for the table they would be overridden or would detach the row from its results
ROW_KEYS = {
    "ckpt": "each row names its checkpoint or its init; the table's input files are paper.inputs.<name>=<file> "
            "(see the table's conf/paper/<table>.yaml)",
    "resume": "a row resumes its own <paper.root>/<row>/checkpoints/last.ckpt by itself",
    "eval.steps": "the rows are scored at the table's NFEs: paper.nfe=[1,2]",
    "eval.out_dir": "a row's results are <paper.root>/<row>/eval, which mode=collect reads: paper.root=<folder> "
                    "moves the table",
}
ROW_KEYS["sampler.steps"] = ROW_KEYS["eval.steps"]


def command_line_overrides() -> list[str]:
    """The job's overrides the user typed (and sweeps set), minus the ones that choose the table and row."""
    return stage_overrides(list(HydraConfig.get().overrides.task))


def stage_overrides(typed: list[str]) -> list[str]:
    """`typed` minus the keys of the launch; a key each row sets itself is refused."""
    out = []
    for o in typed:
        key = override_key(o)
        if key in ROW_KEYS:
            raise ConfigError(f"{o}: {ROW_KEYS[key]}")
        if key.split(".")[0].split("/")[0] not in OWN_KEYS:
            out.append(o)
    return out


def check_metrics(paper: DictConfig, cfg: DictConfig) -> None:
    """Before any training: the table's metrics must be ones the row's evaluation computes."""
    have = list(cfg.eval.metrics)
    missing = [m for m in [paper.metric, *(paper.get("extra_metrics") or [])] if m not in have]
    if missing:
        raise ConfigError(f"paper.metric / paper.extra_metrics name {missing}, which row {paper.row}'s evaluation "
                          f"does not compute (eval.metrics={have}): add them to eval.metrics or choose among {have}")


def compose_stage(overrides: list[str], extra: list[str]) -> DictConfig:
    """compose(overrides + the command line's keys that this stage's config has: its values and its config groups,
    e.g. debug=tiny, whose package is global and so is no key of the config)."""
    base = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    absent = object()
    known = [o for o in extra if o.startswith("+") or (key := override_key(o)) in
             base.hydra.runtime.choices or OmegaConf.select(base, key, default=absent) is not absent]
    cfg = compose(config_name="config", overrides=[*overrides, *known])
    validate(cfg)
    return cfg


DONE = "DONE"  # written into a row's (or stage's) folder when its training finished


def stale(last: Path, differences: list[str]) -> str:
    """A row's folder is not keyed by its setting (unlike the stages'): a finished run there may be another's."""
    run_dir = last.parent.parent
    return (f"{run_dir} holds a finished run trained with other values, which this launch would reuse as if it were "
            f"this setting:\n  " + "\n  ".join(differences) + f"\nFix: pass paper.root=<another folder> to run the "
            f"table with these values beside it, or remove {run_dir} to retrain this row.")


def train_into(run_dir: Path, overrides: list[str], extra: list[str]) -> Path:
    """Train (or resume: run_dir's last.ckpt) and return the final checkpoint; a finished run is reused."""
    from dmf.train.reuse import train_or_reuse

    cfg = compose_stage([*overrides, f"run_dir={run_dir}"], extra)
    print(f"[dmf] paper: python run.py {' '.join(without_repeats([*overrides, *extra, f'run_dir={run_dir}']))}")
    return train_or_reuse(cfg, DONE, time.strftime("%Y-%m-%d %H:%M:%S\n"), stale,
                          say=lambda message: print(f"[dmf] paper: {message}"))


def check_reusable(run_dir: Path, overrides: list[str], extra: list[str]) -> None:
    """Before anything trains (the row's shared stage first): a finished run in run_dir trained with other values
    stops the row."""
    from dmf.train.reuse import check_finished

    check_finished(compose_stage([*overrides, f"run_dir={run_dir}"], extra), DONE, stale)


def stage_dir(paper: DictConfig, name: str, extra: list[str]) -> Path:
    """Where a stage the table's rows share (e.g. the digits flow model) trains: one folder per distinct setting."""
    if name not in (paper.get("stages") or {}):
        raise ConfigError(f"paper={paper.name}: init={name} is neither a stage ({', '.join(paper.get('stages') or [])}) "
                         f"nor a checkpoint")
    key = hashlib.sha1(json.dumps([[str(o) for o in paper.stages[name]], extra]).encode()).hexdigest()[:8]
    return table_root(paper) / "_stages" / f"{name}-{key}"


def git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def same_evaluation(eval_dir: Path, nfes: list[int]) -> list[dict]:
    """The results in a row's eval folder made as this launch's were (same weights, sampler, samples, metrics ...:
    the fingerprint but its step count): a relaunch at fewer paper.nfe keeps the row's other step counts, and never
    takes in results an earlier launch made with other settings."""
    def setting(result: dict) -> str:
        fp = json.loads(json.dumps(result.get("fingerprint") or {}))
        (fp.get("sampler") or {}).pop("steps", None)
        return json.dumps(fp, sort_keys=True)

    found = [json.loads(p.read_text()) for p in sorted(eval_dir.glob("*/result.json"))]
    now = {setting(r) for r in found if int(r["steps"]) in nfes}
    return sorted((r for r in found if setting(r) in now), key=lambda r: int(r["steps"]))


def scoring(overrides: list[str], job_dir: Path, nfes: list[int]) -> list[str]:
    """A row's overrides plus those of its evaluation (mode=eval in <job dir>/eval at the table's NFEs)."""
    return [*overrides, f"run_dir={job_dir}", f"eval.out_dir={job_dir / 'eval'}", f"eval.steps=[{','.join(map(str, nfes))}]"]


def checked_row(cfg: DictConfig, extra: list[str], here: bool = True) -> tuple[DictConfig, list[str], list[int]]:
    """Every check of the row that can fail before it trains: its name, paper.nfe, its evaluation's values and the
    table's metrics (a bad eval value stopped the row only when scoring began, after training). Returns the row's
    spec, overrides and NFEs."""
    from dmf.eval.validate import check_steps, validate_eval

    paper = cfg.paper
    spec = row_spec(paper, paper.row)
    nfes = check_steps(paper.get("nfe"), "paper.nfe")
    overrides = row_overrides(paper, spec)
    eval_cfg = compose_stage(scoring(overrides, Path(cfg.run_dir), nfes), extra)
    validate_eval(eval_cfg, here)
    check_metrics(paper, eval_cfg)
    return spec, overrides, nfes


def check_run_row(cfg: DictConfig, job: list[str], sweep: list) -> None:
    """Each row of a -m sweep of a table, before the first one trains (dmf/config/launch.py)."""
    from dmf.config.launch import runs_here

    checked_row(cfg, stage_overrides(job), runs_here(job))


def run_row(cfg: DictConfig) -> dict:
    from dmf.eval.entry import evaluate

    paper = cfg.paper
    job_dir = Path(cfg.run_dir)
    extra = command_line_overrides()
    spec, overrides, nfes = checked_row(cfg, extra)
    init = spec.get("init")
    if spec.get("train", False):
        stage = init if init in (paper.get("stages") or {}) else None
        if init:
            init = stage_dir(paper, stage, extra) / "checkpoints" / "last.ckpt" if stage else init
            overrides = [*overrides, f"ckpt={init}"]
        check_reusable(job_dir, overrides, extra)
        if stage:
            train_into(init.parent.parent, [str(o) for o in paper.stages[stage]], extra)
        ckpt = train_into(job_dir, overrides, extra)
        overrides = [o for o in overrides if not o.startswith("ckpt=")] + [f"ckpt={ckpt}"]
    evaluate(compose_stage(scoring(overrides, job_dir, nfes), extra))
    if not leads_launch():  # rank 0 writes the results; another rank could read them before they exist
        return {}
    metric = paper.metric
    results = same_evaluation(job_dir / "eval", nfes)
    ours = {int(r["steps"]): r["metrics"].get(metric) for r in results}
    record = {"table": paper.name, "row": paper.row, "label": spec.label, "metric": metric,
              "paper": paper_values(spec), "ours": ours,
              "extra": {k: {int(r["steps"]): r["metrics"].get(k) for r in results}
                        for k in (paper.get("extra_metrics") or [])},
              "init": str(init) if init else None, "overrides": [*overrides, *extra], "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M")}
    write_json_atomic(job_dir / RESULT_FILE, record, indent=1)
    print(f"[dmf] paper {paper.name}/{paper.row} ({spec.label}): {metric} " +
          ", ".join(f"{n} NFE {v:.3f}" for n, v in ours.items() if v is not None))
    return record
