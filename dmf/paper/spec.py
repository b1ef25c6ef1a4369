"""A paper table (conf/paper/<table>.yaml, the `paper` node): rows as overrides with the published numbers."""
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError

RESULT_FILE = "paper_row.json"  # what a finished row leaves in its job folder


def table_root(paper: DictConfig) -> Path:
    return Path(paper.root).expanduser()


ROW_OPTIONS = ("label", "paper", "train", "init", "overrides")


def row_spec(paper: DictConfig, row: str | None) -> DictConfig:
    if row is None:
        raise ConfigError(f"paper={paper.name}: launch every row with `python run.py -m paper={paper.name}` or one with "
                         f"`python run.py -m paper={paper.name} paper.row=<row>`; rows: {', '.join(paper.rows)}")
    if row not in paper.rows:
        raise ConfigError(f"paper.row={row} is not a row of paper={paper.name}; rows: {', '.join(paper.rows)}")
    unknown = [k for k in paper.rows[row] if k not in ROW_OPTIONS]
    if unknown:  # e.g. a misspelt `init` would train the row from scratch
        raise ConfigError(f"paper={paper.name} row {row}: {unknown[0]} is not an option of a row (it takes "
                         f"{', '.join(ROW_OPTIONS)})")
    return paper.rows[row]


def paper_values(spec: DictConfig) -> dict[int, float]:
    """{nfe: published value} of a row (empty for our own sweeps and the digits miniature)."""
    values = spec.get("paper")
    return {int(k): float(v) for k, v in OmegaConf.to_container(values, resolve=True).items()} if values else {}


def row_overrides(paper: DictConfig, spec: DictConfig) -> list[str]:
    """The table's common overrides, then the row's own."""
    return [str(o) for o in (*(paper.get("common") or []), *(spec.get("overrides") or []))]
