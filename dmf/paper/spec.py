"""A paper table (conf/paper/<table>.yaml, the `paper` node): rows as overrides with the published numbers."""
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError
from dmf.core.options import check_known

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
    check_known(f"paper.rows.{row}", paper.rows[row], ROW_OPTIONS)  # a misspelt `init` would train from scratch
    return paper.rows[row]


def paper_values(spec: DictConfig) -> dict[int, float]:
    """{nfe: published value} of a row (empty for our own sweeps and the digits miniature)."""
    values = spec.get("paper")
    return {int(k): float(v) for k, v in OmegaConf.to_container(values, resolve=True).items()} if values else {}


def row_overrides(paper: DictConfig, spec: DictConfig) -> list[str]:
    """The table's common overrides, then the row's own."""
    return [str(o) for o in (*(paper.get("common") or []), *(spec.get("overrides") or []))]
