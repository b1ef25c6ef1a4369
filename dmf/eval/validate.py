"""Early checks of the `eval` group: one clear error before models load or images are generated."""
from pathlib import Path

import torch
from omegaconf import DictConfig

from dmf.core.errors import ConfigError
from dmf.core.options import check_known
from dmf.eval.generation.loop import DECODE_PRECISIONS
from dmf.eval.generation.precision import NETWORK_PRECISIONS
from dmf.eval.generation.images import QUANTIZE
from dmf.eval.paper import PAPER_FID


# conf/eval/default.yaml's keys, which every eval config extends (a test keeps the two equal)
KEYS = ("num_samples", "batch_size", "chunk_size", "feature_batch_size", "steps", "metrics", "monitor_samples",
        "ref_stats", "paper", "out_dir", "overwrite", "save_png", "save_npz", "grid_size", "labels", "quantize",
        "precision", "decode_precision", "device", "checkpoint_every_s", "num_workers", "inception_weights",
        "dinov2_weights", "download_weights", "ref_space", "ref_out", "extractors", "metric_defs", "ref_source")


def check_steps(steps, key: str = "eval.steps") -> list[int]:
    """Step counts to sample at, as `key` (eval.steps, or a recipe's own key for them) names them."""
    if isinstance(steps, int) and not isinstance(steps, bool):
        raise ConfigError(f"{key}={steps} must be a list of step counts: {key}=[{steps}]")
    bad = [s for s in steps if isinstance(s, bool) or not isinstance(s, int) or s < 1] if steps is not None else []
    if steps is None or bad or not len(steps):
        shown = list(steps) if steps is not None else steps
        raise ConfigError(f"{key}={shown} must be a non-empty list of positive integers, e.g. [1,2,4]")
    return [int(s) for s in steps]


def validate_eval(cfg: DictConfig, here: bool = True) -> None:
    """`here`: the evaluation runs on this machine (so its devices count; not for a job sent to a cluster)."""
    ec = cfg.get("eval")
    if ec is None:
        raise ConfigError("the config has no `eval` group: add `- eval: default` to conf/config.yaml's defaults")
    check_known("eval", ec, KEYS)  # an eval file of the user's is merged without Hydra's key check
    for key in ("num_samples", "batch_size", "chunk_size", "feature_batch_size"):
        v = ec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"eval.{key}={v!r} must be a positive integer")
    if ec.get("steps") is not None:  # null: sampler.steps
        check_steps(ec.steps)
    if ec.quantize not in QUANTIZE:
        raise ConfigError(f"eval.quantize={ec.quantize!r} must be one of {QUANTIZE}")
    if ec.labels not in ("random", "balanced"):
        raise ConfigError(f"eval.labels={ec.labels!r} must be 'random' or 'balanced'")
    if ec.precision not in NETWORK_PRECISIONS:
        raise ConfigError(f"eval.precision={ec.precision!r} must be one of {list(NETWORK_PRECISIONS)}")
    if ec.get("decode_precision", "fp32") not in DECODE_PRECISIONS:
        raise ConfigError(f"eval.decode_precision={ec.decode_precision!r} must be one of {list(DECODE_PRECISIONS)}")
    if ec.paper is not None and ec.paper not in PAPER_FID:
        raise ConfigError(f"eval.paper={ec.paper!r} must be one of {sorted(PAPER_FID)} or null")
    if ec.ref_space not in ("image", "latent"):
        raise ConfigError(f"eval.ref_space={ec.ref_space!r} must be 'image' or 'latent'")
    if here and str(ec.get("device", "auto")).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"eval.device={ec.device} but this machine has no CUDA GPU; run on a GPU node or use "
                          f"eval.device=auto (the CPU here)")
    if Path(ec.out_dir).expanduser().is_file():
        raise ConfigError(f"eval.out_dir={ec.out_dir} is a file; results go into a folder: choose another path")
    unknown = [m for m in (ec.metrics or []) if m not in ec.metric_defs]
    if unknown:
        raise ConfigError(f"eval.metrics has unknown {unknown}; defined: {sorted(ec.metric_defs)}")


def check_table_folder(ec: DictConfig) -> None:
    """mode=eval and mode=sample write results.md into eval.out_dir: not over a pipeline's table."""
    if (Path(ec.out_dir).expanduser() / "results.json").is_file():  # what mode=pipeline writes beside its results.md
        raise ConfigError(f"eval.out_dir={ec.out_dir} is a pipeline's run folder, whose results.md this evaluation's "
                          f"table would replace: choose another folder, e.g. eval.out_dir={ec.out_dir}/eval")
