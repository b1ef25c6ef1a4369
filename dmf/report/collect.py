"""mode=collect: one table of a sweep. `python run.py mode=collect dir=multirun/<experiment>/<date>` reads every job
folder under `dir` (a folder with .hydra/overrides.yaml) and writes, into `dir`:

    sweep.md, sweep.csv      one row per job and result row: the swept keys, the results, the last logged losses
    sweep_<metric>_vs_<key>.png   collect.metric against each swept key (one line per result row kind)

A job's results are the rows of its results.json (pipelines, e.g. the digits default) or of its mode=eval
result.json files (eval/<sampler>_<steps>/); its losses are the last logged values in logs/**/metrics.csv (per
stage for pipelines). `read_job` turns one job folder into a record. (Paper tables have their own reader,
dmf/paper/collect.py: their rows are fixed by the table, not by the sweep's overrides.)
"""
import csv
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError
from dmf.core.files import atomic_path, write_csv_atomic, write_text_atomic
from dmf.core.launch import require_one_process
from dmf.core.run_history import HISTORY
from dmf.eval.report import collect as eval_rows, markdown_table

log = logging.getLogger("dmf.collect")

ROW_KEYS = ("stage", "sampler", "steps")  # what tells the result rows of one job apart
SKIP = ("grid", "ckpt", "paper_fid", "images_per_s")  # result fields that are not numbers to compare


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """['guidance.omega=0.6', '+x=1'] -> {'guidance.omega': '0.6', 'x': '1'} (hydra/launcher-style keys kept)."""
    out = {}
    for line in lines:
        key, _, value = line.partition("=")
        out[key.lstrip("+~")] = value
    return out


def last_losses(run_dir: Path, prefix: str = "") -> dict[str, float]:
    """The last logged value of every train/* column, from the newest logs/version_N/metrics.csv."""
    files = sorted(run_dir.glob("logs/**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    last = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            last.update({k: float(v) for k, v in row.items() if k and k.startswith("train/") and v not in ("", None)})
    return {f"{prefix}{k}": v for k, v in last.items()}


def read_job(job_dir: str | Path) -> dict:
    """One job folder -> {"job": name, "overrides": {key: value}, "results": [row, ...], "losses": {col: value}}."""
    job_dir = Path(job_dir)
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = parse_overrides(list(OmegaConf.load(overrides_file))) if overrides_file.exists() else {}
    pipeline = job_dir / "results.json"
    if pipeline.exists():
        record = json.loads(pipeline.read_text())
        results = [{k: v for k, v in r.items() if k not in SKIP} for r in record["rows"]]
        losses = {}
        for stage, stage_dir in record.get("stages", {}).items():
            losses.update(last_losses(Path(stage_dir), prefix=f"{stage}:"))
    else:
        results = [{k: v for k, v in r.items() if k not in SKIP and v is not None} for r in eval_rows(job_dir / "eval")]
        losses = last_losses(job_dir)
    return {"job": job_dir.name, "overrides": overrides, "results": results, "losses": losses}


def find_jobs(root: Path) -> list[Path]:
    """Folders with .hydra/overrides.yaml below root (a path value in the overrides nests a job's folder), except
    those inside a job (a training run's config_history/attempt_NNN/ keeps a copy of .hydra/)."""
    found = {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")
             if p.parent.parent != root and HISTORY not in p.relative_to(root).parts}
    return sorted(j for j in found if not any(a in found for a in j.parents))


def swept_keys(records: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs (or that only some jobs set), in first-seen order."""
    keys = []
    for r in records:
        keys += [k for k in r["overrides"] if k not in keys]
    return [k for k in keys if len({r["overrides"].get(k) for r in records}) > 1]


def sweep_rows(records: list[dict], keys: list[str]) -> list[dict]:
    rows = []
    for r in records:
        base = {"job": r["job"], **{k: r["overrides"].get(k, "") for k in keys}}
        for result in r["results"] or [{}]:
            # a result field named like a swept key (a row's own `sampler`) must not hide the key's value
            result = {(f"result:{k}" if k in keys else k): v for k, v in result.items()}
            rows.append({**base, **result, **r["losses"]})
    return rows


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_tables(rows: list[dict], root: Path) -> tuple[Path, Path]:
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    table = markdown_table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows])
    md_path, csv_path = root / "sweep.md", root / "sweep.csv"
    write_text_atomic(md_path, f"# Sweep {root}\n\n{table}\n")
    write_csv_atomic(csv_path, rows, cols)
    return md_path, csv_path


def plot_against(rows: list[dict], key: str, metric: str, root: Path) -> Path:
    """metric vs one swept key; one line per result row kind (stage, sampler, steps) and value of the other keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = list(dict.fromkeys(r[key] for r in rows))
    numeric = all(_number(v) is not None for v in values)
    xs = sorted(values, key=_number) if numeric else values
    lines: dict[str, list] = {}
    for r in rows:
        if _number(r.get(metric)) is None:
            continue
        label = " ".join(str(r.get(f"result:{k}", r.get(k, ""))) for k in ROW_KEYS).strip()
        others = ", ".join(f"{k}={r[k]}" for k in r["_swept"] if k != key)
        lines.setdefault(f"{label} {others}".strip(), []).append((r[key], float(r[metric])))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, points in sorted(lines.items()):
        points.sort(key=lambda p: xs.index(p[0]))
        ax.plot([_number(x) if numeric else xs.index(x) for x, _ in points], [y for _, y in points], "o-", label=label)
    if not numeric:
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    name = f"sweep_{metric}_vs_{key}".replace("/", "_")  # one file per metric: collect.metric=<another> adds its own
    path = root / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def collect(cfg: DictConfig) -> dict:
    """mode=collect: a sweep's folder (dir=) or a paper table (paper=<table>)."""
    require_one_process("collect")
    if cfg.get("paper") is not None:
        if cfg.get("dir") is not None:
            raise ConfigError("mode=collect takes dir=<sweep folder> or paper=<table>, not both")
        if cfg.collect.metric is not None:  # a table's rows carry the metric they were scored in
            raise ConfigError(f"collect.metric={cfg.collect.metric} is for sweeps (dir=); a paper table shows "
                              f"paper.metric, the metric its rows were scored in")
        from dmf.paper.collect import collect_table

        return collect_table(cfg.paper)
    if cfg.get("dir") is None:
        raise ConfigError("mode=collect needs dir=multirun/<experiment>/<date> (a sweep's folder) or paper=<table> "
                          "(a table of conf/paper/)")
    return collect_sweep(cfg)


def collect_sweep(cfg: DictConfig) -> dict:
    root = Path(cfg.dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dir={root} is not a folder; pass dir=multirun/<experiment>/<date> (a sweep's folder)")
    jobs = find_jobs(root)
    if not jobs:
        one_run = " (it is one run's folder)" if (root / ".hydra").is_dir() else ""
        raise ConfigError(f"no job folders (with .hydra/overrides.yaml) under dir={root}{one_run}: mode=collect reads a "
                          f"sweep's folder, multirun/<experiment>/<date>")
    # a job folder's name is its overrides; a value with "/" (a path) nests it, so name jobs relative to root
    records = [{**read_job(j), "job": str(j.relative_to(root))} for j in jobs]
    keys = swept_keys(records)
    rows = sweep_rows(records, keys)
    metric = cfg.collect.metric or next((k for r in rows for k in r if k.startswith("fd") or k == "fid"), None)
    numeric = list(dict.fromkeys(k for r in rows for k, v in r.items() if k not in keys and _number(v) is not None))
    if cfg.collect.metric and metric not in numeric:  # a typo would draw empty plots over the good ones
        raise ConfigError(f"collect.metric={metric} is not a numeric column of this sweep; columns: {numeric}")
    md, csv_path = write_tables(rows, root)
    plots = []
    if metric:
        marked = [{**r, "_swept": keys} for r in rows]
        plots = [plot_against(marked, k, metric, root) for k in keys]
    print(md.read_text(), flush=True)
    log.info(f"{len(jobs)} jobs, swept {keys or 'nothing'} -> {md}, {csv_path}"
             + (f", plots of {metric}: {', '.join(str(p) for p in plots)}" if plots else ""))
    return {"markdown": md, "csv": csv_path, "plots": plots, "rows": rows, "swept": keys}
