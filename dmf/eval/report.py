"""What people read after an evaluation: a table (markdown + CSV) of every result under eval.out_dir and, when
several step counts were evaluated, a metric-vs-NFE plot."""
import json
from pathlib import Path

from dmf.core.files import atomic_path, write_csv_atomic, write_text_atomic
from dmf.eval.paper import paper_fid

FIRST = ["sampler", "steps", "shift", "cfg_scale", "num_samples"]
LAST = ["images_per_s", "ckpt"]


def collect(out_dir: str | Path) -> list[dict]:
    rows = []
    for p in sorted(Path(out_dir).glob("*/result.json")):
        r = json.loads(p.read_text())
        opts = (r.get("fingerprint") or {}).get("sampler") or {}
        rows.append({"sampler": r["sampler"], "steps": r["steps"], "shift": opts.get("shift"),
                     "cfg_scale": opts.get("cfg_scale"), "num_samples": r["num_samples"], **r["metrics"],
                     "paper_fid": r.get("paper_fid"), "images_per_s": r.get("images_per_s"), "ckpt": r.get("ckpt")})
    return sorted(rows, key=lambda r: (r["sampler"], r["steps"]))


def _fmt(v, col: str = "") -> str:
    if v is None:
        return ""
    if col in ("paper_fid", "shift", "cfg_scale"):
        return f"{v:g}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def columns(rows: list[dict]) -> list[str]:
    metric_cols = []
    for r in rows:
        metric_cols += [k for k in r if k not in FIRST + LAST + ["paper_fid"] + metric_cols]
    paper = ["paper_fid"] if any(r.get("paper_fid") is not None for r in rows) else []
    return FIRST + metric_cols + paper + LAST


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    """A markdown table of cells already formatted (every table the project writes: eval, sweeps, pipelines, paper)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_tables(rows: list[dict], out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    cols = columns(rows)
    table = markdown_table(cols, [[_fmt(r.get(c), c) for c in cols] for r in rows])
    md_path, csv_path = out_dir / "results.md", out_dir / "results.csv"
    write_text_atomic(md_path, (f"# {title}\n\n" if title else "") + table + "\n")
    write_csv_atomic(csv_path, rows, cols, extrasaction="ignore")
    return md_path, csv_path


def plot_vs_nfe(rows: list[dict], out_dir: str | Path, metric: str = "fid") -> Path | None:
    """metric vs steps, one line per sampler, paper numbers dashed; None when no sampler has 2+ step counts."""
    by_sampler = {}
    for r in rows:
        if r.get(metric) is not None:
            by_sampler.setdefault(r["sampler"], []).append(r)
    if not any(len(v) > 1 for v in by_sampler.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for sampler, rs in sorted(by_sampler.items()):
        rs = sorted(rs, key=lambda r: r["steps"])
        ax.plot([r["steps"] for r in rs], [r[metric] for r in rs], "o-", label=sampler)
        paper = [(r["steps"], r["paper_fid"]) for r in rs if r.get("paper_fid") is not None]
        if metric == "fid" and paper:
            ax.plot(*zip(*paper), "s--", color="gray", label=f"paper ({sampler})")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["steps"] for rs in by_sampler.values() for r in rs})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("steps (NFE without CFG)")
    ax.set_ylabel(metric.upper() if metric == "fid" else metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / f"{metric}_vs_nfe.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def write_report(out_dir: str | Path, paper: str | None = None, title: str = "") -> dict:
    rows = collect(out_dir)
    for r in rows:
        if paper and r.get("paper_fid") is None:
            r["paper_fid"] = paper_fid(paper, r["steps"])
    if not rows:
        return {}
    md, csv_path = write_tables(rows, out_dir, title)
    keys = columns(rows)
    metric = "fid" if "fid" in keys else next((k for k in keys if k.startswith("fd")), None)
    plot = plot_vs_nfe(rows, out_dir, metric) if metric else None
    return {"markdown": md, "csv": csv_path, "plot": plot, "rows": rows}
