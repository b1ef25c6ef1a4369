"""Checks made in the launching process, before Lightning starts ranks or builds anything expensive: each
failure is one message naming the key and the fix."""
import inspect
import os
import re
from pathlib import Path

import lightning as L
import torch

from omegaconf import DictConfig, ListConfig, OmegaConf

from dmf.core.errors import UsageError
from dmf.core.options import check_known
from dmf.core.ranks import torchrun_layout
from dmf.eval.validate import KEYS as EVAL_KEYS, validate_eval
from dmf.models.compile import CUDA_GRAPH_MODES
from dmf.models.hub import HF_PREFIX, resolve_path
from dmf.train.batch import BatchError, BatchLayout, batch_layout, resolve_devices
from dmf.train.module import OPTIONS
from dmf.train.nonfinite import TRAINER_KEYS as NONFINITE_KEYS
from dmf.train.slurm import cpu_tasks_allocated

# What a user should pass for a mandatory value, by key.
EXAMPLES = {
    "ckpt": "the SiT(+REPA) checkpoint to start from, e.g. ckpt=/ckpts/sit-xl-2-repa-256.pt or "
            "ckpt=hf://<owner>/<repo>/<file>.pt",
    "guidance.teacher.ckpt": "the frozen SiT teacher, e.g. guidance.teacher.ckpt=/ckpts/sit-xl-2-repa-256.pt",
    "objective.encoder": "a frozen encoder of the clean images for REPA",
}
# The parts of the config that mode=train builds.
TRAIN_KEYS = ("ckpt", "model", "attention", "objective", "guidance", "time", "data", "trainer", "optim", "ema",
              "callbacks", "logger")


class PreflightError(UsageError):
    pass


def _missing(node, prefix: str = ""):
    """Paths of `???` values below node, without resolving interpolations (they may point anywhere)."""
    keys = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
    for k in keys:
        path = f"{prefix}[{k}]" if isinstance(node, ListConfig) else f"{prefix}.{k}" if prefix else str(k)
        if OmegaConf.is_missing(node, k):
            yield path
        elif not OmegaConf.is_interpolation(node, k):
            child = node._get_node(k)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_none():
                yield from _missing(child, path)


def missing_values(cfg: DictConfig, roots=TRAIN_KEYS) -> list[str]:
    """Mandatory values (`???`) still unset under the given top-level keys."""
    return sorted(p for p in _missing(cfg) if re.split(r"[.\[]", p)[0] in roots)


def check_mandatory(cfg: DictConfig) -> None:
    """`???` values, and the keys an experiment lists under `required` (a `???` in an experiment file cannot
    mark a key that the root config already sets, e.g. `ckpt: null`: merging keeps the old value)."""
    unset = [k for k in cfg.get("required") or [] if OmegaConf.select(cfg, k, throw_on_missing=False) in (None, "???")]
    missing = sorted(set(missing_values(cfg)) | set(unset))
    if missing:
        lines = [f"  {k}: required; pass {EXAMPLES.get(k, f'{k}=<value>')}" for k in missing]
        raise PreflightError("missing required values:\n" + "\n".join(lines))


def world_size(cfg: DictConfig) -> int:
    t = cfg.trainer
    return resolve_devices(t.devices, t.accelerator) * int(t.num_nodes)


def check_devices(cfg: DictConfig) -> None:
    t = cfg.trainer
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    asked = resolve_devices(t.devices, t.accelerator)
    if t.accelerator in ("gpu", "cuda") and gpus == 0:
        raise PreflightError(f"trainer.accelerator={t.accelerator} but this machine has no CUDA GPU; run on a GPU node "
                             f"or set trainer.accelerator=cpu")
    if t.accelerator in ("auto", "gpu", "cuda") and gpus and asked > gpus:
        raise PreflightError(f"trainer.devices={t.devices} but this machine has {gpus} GPU(s); set trainer.devices="
                             f"{gpus} (the global batch is kept by data.global_batch_size)")
    if (torchrun := torchrun_layout()) is not None:
        per_node, nodes = torchrun
        if (asked, int(t.num_nodes)) != (per_node, nodes):
            raise PreflightError(
                f"torchrun started {per_node} process(es) per node on {nodes} node(s), but trainer.devices={t.devices} "
                f"x trainer.num_nodes={t.num_nodes} lays the run out for {asked} x {t.num_nodes}: set "
                f"trainer.devices={per_node} (or auto) trainer.num_nodes={nodes}, or match torchrun's --nproc_per_node "
                f"and --nnodes to them")
        return  # torchrun started the processes: the CPU check below is about processes Lightning would start
    if int(t.num_nodes) > 1 and "SLURM_JOB_ID" not in os.environ and "NODE_RANK" not in os.environ:
        raise PreflightError(f"trainer.num_nodes={t.num_nodes}, but nothing started this run on other nodes (no SLURM "
                             f"job, torchrun or NODE_RANK): it would wait for them forever. Fix: submit it with "
                             f"hydra/launcher=slurm_h100_multinode (or start it with srun or torchrun --nnodes), or "
                             f"trainer.num_nodes=1")
    if t.accelerator == "auto" and not gpus and asked > 1 and not cpu_tasks_allocated(asked):
        raise PreflightError(f"trainer.devices={t.devices} but this machine has no GPU (it would start {asked} CPU "
                             f"processes); set trainer.devices=1, or trainer.accelerator=cpu trainer.devices={asked} "
                             f"to run {asked} CPU processes on purpose")


def check_files(cfg: DictConfig, submission: bool = False) -> None:
    """Weights and statistics the run will read, and its dataset folder: missing ones (or hf:// URIs offline) stop
    here, all named at once. submission: a sweep's launch check, of local files only: an hf:// file is fetched by the
    job, and a job's nodes may see its data folder where the login node does not (e.g. staged to local disk)."""
    fid = "callbacks.fid.ref_stats" if OmegaConf.select(cfg, "callbacks.fid") else None
    problems = []
    for key in ("ckpt", "guidance.teacher.ckpt", "objective.encoder.weights", fid):
        value = OmegaConf.select(cfg, key, throw_on_missing=False) if key else None
        if value and value not in ("???", "build") and not (submission and str(value).startswith(HF_PREFIX)):
            try:
                resolve_path(value, key=key)
            except (FileNotFoundError, ValueError) as err:
                problems.append(str(err))
    # a folder dataset's root (data.root, or DMF_DATA in its default); its index is read with the datamodule
    root = OmegaConf.select(cfg, "data.datamodule.root", throw_on_missing=False)
    if not submission and root not in (None, "???") and not Path(root).expanduser().is_dir():
        problems.append(f"data.root: {root} is not a folder (data.root=<folder>, or DMF_DATA for the default "
                        f"${{DMF_DATA}}/imagenet<resolution>, chooses the dataset)")
    if len(problems) == 1:
        raise PreflightError(problems[0])
    if problems:
        raise PreflightError(f"{len(problems)} inputs of the run are not there:\n" +
                             "\n".join(f"  {p}" for p in problems))


def layout(cfg: DictConfig) -> BatchLayout:
    d = cfg.data
    if "batch_size" in d.datamodule:
        raise PreflightError(f"data.datamodule.batch_size={d.datamodule.batch_size} is derived from the world size; "
                             f"set data.global_batch_size instead (and data.max_batch_per_device to cap memory)")
    try:
        batch = batch_layout(d.global_batch_size, world_size(cfg), d.get("max_batch_per_device"),
                             cfg.trainer.accumulate_grad_batches)
    except BatchError as err:
        raise PreflightError(str(err)) from None
    if batch.accumulate > 1 and d.datamodule.get("resampled") is False:
        raise PreflightError(f"data.datamodule.resampled=false (an exact pass over the shards) ends each epoch on "
                             f"unequal batches per worker, and with {batch.describe()} that makes a step on part of "
                             f"the global batch: use data.datamodule.resampled=true, or devices enough for no "
                             f"accumulation")
    return batch


def check_data(datamodule) -> None:
    """Reads the dataset's index (not the data): a wrong data.root stops here, in one line."""
    try:
        datamodule.setup("fit")
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        raise PreflightError(f"data: {err} (data.root or DMF_DATA choose the folder)") from None


def check_compile(cfg: DictConfig) -> None:
    mode = cfg.model.get("compile")
    if mode in CUDA_GRAPH_MODES:
        raise PreflightError(f"model.compile={mode} records CUDA graphs, which are offered for generation (mode=eval, "
                             f"mode=sample), not for the training step's JVP and backward; train with "
                             f"model.compile=true (or max-autotune-no-cudagraphs) and evaluate with model.compile={mode}")


def check_options(cfg: DictConfig) -> None:
    """optim, ema and eval (the FID callback's settings) are read key by key: a misspelt key in an experiment file
    (or typed with +) would do nothing. trainer's keys are lightning.Trainer's arguments (a TypeError after the
    model is built, else) and the non-finite guard's."""
    trainer = (*inspect.signature(L.Trainer.__init__).parameters, *NONFINITE_KEYS)
    for group, known in {**OPTIONS, "eval": EVAL_KEYS, "trainer": trainer}.items():
        if group in cfg:
            check_known(group, cfg[group], known, PreflightError)


def lightning_precisions() -> list:
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    def flat(t):
        return [x for a in get_args(t) for x in (flat(a) if get_args(a) else [a])]
    return list(dict.fromkeys(["auto", *map(str, flat(_PRECISION_INPUT))]))  # 32 and "32" alike


def check_precision(cfg: DictConfig) -> None:
    value = cfg.trainer.get("precision")
    if isinstance(value, bool) or str(value) not in (known := lightning_precisions()):
        raise PreflightError(f"trainer.precision={value!r} must be one of {', '.join(known)} (auto: bf16-mixed on a "
                             f"GPU, 32-true on a CPU)")


def check_checkpoint_folder(cfg: DictConfig) -> None:
    """resume=auto, the final save, pipelines and paper rows read <run_dir>/checkpoints/last.ckpt: the callbacks
    that write checkpoints must write there, and last.ckpt must be written."""
    want = Path(cfg.run_dir) / "checkpoints"
    for name in ("checkpoint", "requeue", "rolling_last"):
        node = (cfg.get("callbacks") or {}).get(name)
        if node is not None and node.get("dirpath") is not None and Path(node.dirpath) != want:
            raise PreflightError(f"callbacks.{name}.dirpath={node.dirpath}: a run's checkpoints live in {want}, "
                                 f"where resume=auto, pipelines and paper rows read them; to put them elsewhere, move "
                                 f"the whole run with run_dir=<folder>")
    if OmegaConf.select(cfg, "callbacks.checkpoint.save_last") is False:
        raise PreflightError("callbacks.checkpoint.save_last=false: last.ckpt is what resumes and later stages read; "
                             "to keep fewer files, raise callbacks.checkpoint.every_n_train_steps instead")


def preflight(cfg: DictConfig) -> BatchLayout:
    """Everything mode=train can check before building the model; returns the batch layout."""
    check_mandatory(cfg)
    check_options(cfg)
    check_precision(cfg)
    check_checkpoint_folder(cfg)
    check_compile(cfg)
    check_devices(cfg)
    check_eval_callback(cfg)
    check_files(cfg)
    return layout(cfg)


def check_eval_callback(cfg: DictConfig) -> None:
    """callbacks=with_eval's FID check reads eval's values (labels, quantize, metrics ...): a bad one stops here, not
    with a traceback at the first check, after training steps."""
    if OmegaConf.select(cfg, "callbacks.fid") is not None:
        validate_eval(cfg)


def launch_checks(cfg: DictConfig, here: bool) -> None:
    """preflight's cheap checks, for each job of a -m sweep before the first one starts or is queued: the local files
    it names exist (a cluster's login node sees the shared file system); the devices and the batch layout only where
    the jobs run on this machine (`here`), not on a cluster's nodes."""
    check_mandatory(cfg)
    check_options(cfg)
    check_precision(cfg)
    check_checkpoint_folder(cfg)
    check_compile(cfg)
    check_eval_callback(cfg)
    check_files(cfg, submission=True)  # a SLURM sweep must not queue jobs that will not find their checkpoint
    if here:
        check_devices(cfg)
        layout(cfg)
