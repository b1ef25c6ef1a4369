"""A run folder's history of launches: every training attempt (start or resume) keeps its config, its status
(accepted or refused) and Hydra's record of the launch under <run_dir>/config_history/attempt_NNN/. Hydra
rewrites <run_dir>/.hydra before a launch can be checked, so a refused launch puts back the last accepted one's."""
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from dmf.core.files import write_text_atomic

HISTORY = "config_history"


def attempts(run_dir: Path) -> list[Path]:
    """The run's attempt folders, oldest first."""
    found = [p for p in (run_dir / HISTORY).glob("attempt_*") if p.name.split("_")[1].isdigit()]
    return sorted(found, key=_number)


def _number(attempt: Path) -> int:
    return int(attempt.name.split("_")[1])


def record_attempt(run_dir: Path, config: dict, status: str, resumed_from: str | None) -> Path:
    history = run_dir / HISTORY
    history.mkdir(parents=True, exist_ok=True)
    done = attempts(run_dir)
    attempt = history / f"attempt_{1 + (_number(done[-1]) if done else 0):03d}"
    attempt.mkdir()
    OmegaConf.save(OmegaConf.create(config), attempt / "config.yaml")
    (attempt / "status").write_text(f"{status}\nresumed_from: {resumed_from}\ntime: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    hydra_dir = run_dir / ".hydra"
    if hydra_dir.is_dir():
        shutil.copytree(hydra_dir, attempt / ".hydra")
    return attempt


def mark_last_attempt(run_dir: Path, status: str) -> None:
    """A launch that failed after its attempt was recorded as accepted (building the network from a new checkpoint,
    the data): it is not the run's record, which restore_launch_record then takes from the attempt before."""
    if done := attempts(run_dir):
        lines = (done[-1] / "status").read_text().split("\n")
        write_text_atomic(done[-1] / "status", "\n".join([status, *lines[1:]]))


def restore_launch_record(run_dir: Path) -> None:
    """Put back the .hydra record of the run's last accepted attempt (a refused launch, whatever refused it: a bad
    value, a refused resume or restart, would otherwise leave its own). A folder with no accepted attempt keeps
    what Hydra wrote."""
    accepted = [p for p in attempts(run_dir)
                if (p / "status").exists() and (p / "status").read_text().startswith("accepted") and (p / ".hydra").is_dir()]
    if accepted and (run_dir / ".hydra").is_dir() and _files(accepted[-1] / ".hydra") != _files(run_dir / ".hydra"):
        shutil.rmtree(run_dir / ".hydra")
        shutil.copytree(accepted[-1] / ".hydra", run_dir / ".hydra")


def remove_refused_launch(folder: Path) -> None:
    """A launch refused before any work, in a folder it created, leaves nothing: Hydra's .hydra/ and an empty run.log
    there are no run's record (a newcomer's typos filled outputs/ with such folders). A run.log with lines (a
    pipeline that trained a stage elsewhere, then stopped) is kept."""
    log = folder / "run.log"
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {".hydra", "run.log"} and \
            (not log.exists() or log.stat().st_size == 0):
        shutil.rmtree(folder)
        if not any(folder.parent.iterdir()):  # outputs/<experiment>/ made for it alone
            folder.parent.rmdir()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
