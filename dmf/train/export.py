"""mode=export: the EMA weights of a training checkpoint in the authors' layout, for their code and ours.

    python run.py mode=export experiment=<as trained> ckpt=<run>/checkpoints/last.ckpt

writes <stem>-ema.pt ({"ema": state_dict}), <stem>-ema.safetensors (the same tensors) and <stem>-ema.yaml (the
config the checkpoint records, i.e. what the weights were trained with, with ckpt=<the source>; this launch's
composed config for a file that records none) beside the checkpoint, or at `mode.out` (a path without suffix). The weights are loaded into the
configured network first (every key must fit), so an export never holds weights its config cannot load.
"""
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dmf.core.errors import ConfigError, ResultExistsError
from dmf.core.files import atomic_path
from dmf.core.launch import require_one_process
from dmf.models.checkpoint import load_weights, recorded_config
from dmf.models.hub import resolve_path

SUFFIXES = (".pt", ".safetensors", ".yaml")


def export(cfg: DictConfig, out: str | None = None, overwrite: bool = False) -> dict[str, Path]:
    from safetensors.torch import save_file

    require_one_process("export")
    if not cfg.get("ckpt"):
        raise ConfigError("mode=export needs ckpt=<run>/checkpoints/last.ckpt (or any checkpoint with EMA weights)")
    src = Path(resolve_path(cfg.ckpt, key="ckpt"))
    if out and Path(out).is_dir():
        raise ConfigError(f"mode.out={out} is a folder; mode.out is a path without suffix, e.g. mode.out={out}/model "
                          f"(writes model.pt, model.safetensors and model.yaml in it)")
    stem = Path(out) if out else src.with_name(f"{src.stem}-ema")
    paths = {s: stem.with_name(stem.name + s) for s in SUFFIXES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ResultExistsError(f"mode=export would replace {', '.join(existing)}: pass mode.overwrite=true "
                                f"or mode.out=<another path>")
    net = instantiate(cfg.model)
    load_weights(net, src, prefer="ema")  # strict: the config must describe these weights
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    stem.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths[".pt"]) as tmp:
        torch.save({"ema": state}, tmp)
    with atomic_path(paths[".safetensors"]) as tmp:
        save_file(state, str(tmp), metadata={"source": str(src)})
    # the config the weights were trained with (this launch's keys describe them only where they match it: the
    # network's are checked by the load above, validate_typed refuses training keys typed here), else this launch's
    record = recorded_config(src)
    with atomic_path(paths[".yaml"]) as tmp:
        OmegaConf.save(OmegaConf.create({**record, "ckpt": str(cfg.ckpt)}) if record else cfg, tmp)
    print(f"[dmf] exported the EMA weights of {src} ({len(state)} tensors) to {stem}{{{','.join(SUFFIXES)}}}")
    return paths
