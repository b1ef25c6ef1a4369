"""mode=collect: `python run.py mode=collect paper=<table>` writes <paper.root>/<table>.md and .csv
(one line per row and NFE: the paper's value, ours, the difference, the commit and date of our run, "missing" for
rows not run yet) and <table>_vs_nfe.png (ours solid, the paper's dashed).

Each row is read from its job folder's paper_row.json (dmf/paper/run.py), written when the row finished.
"""
import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from dmf.core.errors import ConfigError
from dmf.core.files import atomic_path, write_csv_atomic, write_text_atomic
from dmf.eval.report import markdown_table
from dmf.paper.spec import RESULT_FILE, paper_values, table_root

log = logging.getLogger("dmf.paper")


def read_row(job_dir: Path) -> dict | None:
    """A finished row's record, or None when the row has not finished (no paper_row.json)."""
    path = job_dir / RESULT_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["ours"] = {int(k): v for k, v in record["ours"].items()}
    record["extra"] = {m: {int(k): v for k, v in vals.items()} for m, vals in record.get("extra", {}).items()}
    return record


def table_rows(paper: DictConfig) -> list[dict]:
    root, nfes, extras = table_root(paper), [int(n) for n in paper.nfe], list(paper.get("extra_metrics") or [])
    rows = []
    for name, spec in paper.rows.items():
        record = read_row(root / name)
        if record and record.get("metric", paper.metric) != paper.metric:  # its `ours` are values of that metric
            raise ConfigError(f"row {name} was scored in {record['metric']} ({root / name / RESULT_FILE}), but "
                              f"paper.metric={paper.metric} would label those values as {paper.metric}: collect with "
                              f"paper.metric={record['metric']}, or run the row again with paper.metric={paper.metric}")
        published = paper_values(spec)
        for nfe in nfes:
            ours = record["ours"].get(nfe) if record else None
            ref = published.get(nfe)
            rows.append({
                "row": name, "label": spec.label, "nfe": nfe, "paper": ref,
                "ours": ours if record and nfe in record["ours"] else "missing",
                "difference": ours - ref if isinstance(ours, (int, float)) and ref is not None else None,
                **{m: (record["extra"].get(m, {}).get(nfe) if record else None) for m in extras},
                "commit": record["commit"] if record else "", "date": record["date"] if record else "",
            })
    return rows


def fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_markdown(rows: list[dict], paper: DictConfig, path: Path) -> None:
    cols = list(rows[0])
    cells = [[(f"{r[c]:+.3f}" if c == "difference" and r[c] is not None else fmt(r[c])) for c in cols] for r in rows]
    metric = f"Metric: {paper.metric}" + (f" ({paper.note})" if paper.get("note") else "")
    write_text_atomic(path, f"# {paper.get('title') or paper.name}\n\n{metric}\n\n{markdown_table(cols, cells)}\n")


def plot(rows: list[dict], paper: DictConfig, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    drawn = False
    for name in paper.rows:
        mine = [r for r in rows if r["row"] == name]
        ours = [(r["nfe"], r["ours"]) for r in mine if isinstance(r["ours"], (int, float))]
        ref = [(r["nfe"], r["paper"]) for r in mine if r["paper"] is not None]
        if ours:
            line, = ax.plot(*zip(*ours), "o-", label=f"{mine[0]['label']} (ours)")
            drawn = True
        if ref:
            ax.plot(*zip(*ref), "x--", color=line.get_color() if ours else None, label=f"{mine[0]['label']} (paper)")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("NFE")
    ax.set_ylabel(paper.metric)
    ax.set_xticks([int(n) for n in paper.nfe])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(paper.get("title") or paper.name, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def collect_table(paper: DictConfig) -> dict:
    root = table_root(paper)
    if not root.is_dir():
        raise ConfigError(f"paper.root={root} does not exist: no row of paper={paper.name} has run there (launch "
                          f"them with python run.py -m paper={paper.name}, or give the folder they ran in)")
    rows = table_rows(paper)
    md, csv_path = root / f"{paper.name}.md", root / f"{paper.name}.csv"
    write_markdown(rows, paper, md)
    write_csv_atomic(csv_path, rows, list(rows[0]))
    figure = plot(rows, paper, root / f"{paper.name}_vs_nfe.png")
    done = len({r["row"] for r in rows if r["ours"] != "missing"})
    print(md.read_text(), flush=True)
    log.info(f"{done} of {len(paper.rows)} rows finished -> {md}, {csv_path}" + (f", {figure}" if figure else ""))
    return {"markdown": md, "csv": csv_path, "plot": figure, "rows": rows}
