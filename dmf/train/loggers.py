"""Loggers and what they record: wandb (offline-first, one run per run dir), a CSV log that continues across
resumes, and the composed config as the run's hyperparameters."""
import csv
import hashlib
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, ListConfig, OmegaConf


def run_id(run_dir: str | os.PathLike) -> str:
    """A wandb run id that is a function of the run dir: a requeued or resumed job continues the same run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def sweep_identity() -> dict:
    """Inside a Hydra multirun job: the sweep dir's name as group, the job's overrides as name and tags."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    return {"group": Path(hc.sweep.dir).name, "name": hc.job.override_dirname or None,
            "tags": [o[:64] for o in overrides]}  # wandb limits a tag to 64 characters


def wandb_logger(save_dir: str, project: str = "dmf", name: str | None = None, **kwargs):
    """A WandbLogger that runs offline when no API key is configured, instead of prompting or failing; its id
    follows the run dir (resume="allow"), and a sweep's jobs share a group."""
    from lightning.pytorch.loggers import WandbLogger

    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    offline = os.environ.get("WANDB_MODE") == "offline" or not has_key
    identity = {"name": name, "id": run_id(save_dir), "resume": "allow", **sweep_identity()}
    identity.update(kwargs)
    return WandbLogger(save_dir=save_dir, project=project, offline=offline, **identity)


class _AppendingWriter(ExperimentWriter):
    """Continues an existing metrics.csv (its header gives the known columns) where Lightning's writer deletes it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ContinuingCSVLogger(CSVLogger):
    """One <save_dir>/<name>/version_0/metrics.csv per run dir: a resumed or requeued attempt appends to it (the rows
    the previous attempt logged after its checkpoint are moved aside first, dmf.train.log_overlap). Rows reach the
    file at every logged step, so a kill without warning loses none that a checkpoint covers."""

    def __init__(self, save_dir: str, name: str = "logs", flush_logs_every_n_steps: int = 1, **kwargs):
        super().__init__(save_dir, name=name, version=0, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def resolved_values(node):
    """A config as plain values, each resolved where it can be: one that cannot (an interpolation of a key this
    config lacks, e.g. preprocess.out without data.root; a ??? value) keeps its text instead of failing the whole."""
    if not isinstance(node, (DictConfig, ListConfig)):
        return node
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    raw = None
    out = {} if isinstance(node, DictConfig) else [None] * len(node)
    for key in keys:
        try:
            out[key] = resolved_values(node[key])
        except Exception:
            raw = OmegaConf.to_container(node, resolve=False) if raw is None else raw
            out[key] = raw[key]
    return out


def log_run_config(loggers, cfg: DictConfig, batch) -> None:
    """The composed config, resolved, and the batch layout derived at launch, as the run's hyperparameters (wandb
    config, hparams.yaml); loggers write on rank zero only. Every attempt of a run logs the same keys, so a resume
    replaces values rather than adding any: only keys allowed to change mid-run can differ (dmf.train.resume_guard),
    and the record then shows what the run is now doing."""
    params = {**resolved_values(cfg), "batch/global": batch.global_batch, "batch/per_device": batch.per_device,
              "batch/accumulate": batch.accumulate, "batch/world_size": batch.world_size}
    for logger in loggers:
        logger.log_hyperparams(params)
