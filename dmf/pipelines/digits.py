"""The embedded default: train a flow model on the digits, fine-tune it into a DMF flow map, sample, score.

Each stage is an ordinary experiment (experiment=digits_flow, experiment=digits_dmf) composed with Hydra's
compose API, so the pipeline exercises exactly the code paths of the large runs.
"""
from pathlib import Path

import torch
from hydra import compose
from omegaconf import DictConfig
from torchvision.utils import save_image
from tqdm import tqdm

from dmf.config import validate
from dmf.eval.build import build_network
from dmf.eval.digits_classifier import load_classifier
from dmf.eval.digits_score import DigitsScorer
from dmf.sampling import build_sampler
from dmf.train.entry import train


def run_stage(cfg: DictConfig, stage: str, run_dir: Path, extra: list[str]) -> tuple[torch.nn.Module, Path]:
    """Train one stage, or load it when pipeline.<stage>.ckpt is given; returns (EMA network, its checkpoint)."""
    spec = cfg.pipeline[stage]
    if spec.get("ckpt"):
        stage_cfg = compose(config_name="config", overrides=[f"experiment={spec.experiment}", f"ckpt={spec.ckpt}"])
        print(f"[dmf] stage {stage}: loading {spec.ckpt}")
        return build_network(stage_cfg), Path(spec.ckpt)
    overrides = [f"experiment={spec.experiment}", f"run_dir={run_dir}", f"seed={cfg.seed}",
                 f"trainer.max_steps={spec.max_steps}", *extra, *cfg.pipeline.overrides]
    stage_cfg = compose(config_name="config", overrides=overrides)
    validate(stage_cfg)
    print(f"[dmf] stage {stage}: python run.py {' '.join(overrides)}")
    return train(stage_cfg).ema_net.eval(), run_dir / "checkpoints" / "last.ckpt"


@torch.no_grad()
def generate(net, sampler, labels: torch.Tensor, seed: int, batch: int = 512) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(labels), net.in_channels, net.input_size, net.input_size), generator=g)
    out = [sampler(net, n, y) for n, y in zip(noise.split(batch), labels.split(batch))]
    return torch.cat(out).clamp(-1, 1)


def class_grid(images: torch.Tensor, labels: torch.Tensor, per_class: int = 10) -> torch.Tensor:
    """Rows = classes, columns = the first samples of each class, upsampled so 8x8 digits are visible."""
    rows = [images[labels == c][:per_class] for c in labels.unique(sorted=True)]
    grid = torch.cat(rows)
    return torch.nn.functional.interpolate(grid, scale_factor=4, mode="nearest")


def markdown_table(rows: list[dict]) -> str:
    lines = ["| model | sampler | steps (NFE) | FD | class acc |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['fd']:.2f} | {100 * r['class_acc']:.1f} % |"
              for r in rows]
    return "\n".join(lines)


def run(cfg: DictConfig) -> list[dict]:
    run_dir = Path(cfg.run_dir)
    nets = {}
    nets["flow"], flow_ckpt = run_stage(cfg, "flow", run_dir / "flow", [])
    nets["dmf"], _ = run_stage(cfg, "dmf", run_dir / "dmf", [f"ckpt={flow_ckpt}"])

    scorer = DigitsScorer(load_classifier())
    labels = scorer.real_labels  # the real class counts, so FD compares like with like
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in tqdm(cfg.pipeline.evaluate, desc="sampling + scoring"):
        sampler = build_sampler(spec.name, steps=spec.steps, cfg_scale=spec.get("cfg_scale", 1.0))
        images = generate(nets[spec.model], sampler, labels, seed=cfg.seed + 1)
        rows.append({"model": spec.model, "sampler": spec.name, "steps": spec.steps, **scorer(images, labels)})
        save_image(class_grid(images, labels), run_dir / "samples" / f"{spec.model}_{spec.name}_{spec.steps}.png",
                   nrow=10, normalize=True, value_range=(-1, 1), pad_value=1.0)
    table = markdown_table(rows)
    (run_dir / "results.md").write_text(
        "# Digits: Fréchet distance (classifier features, vs the 1,797 real digits) and class accuracy\n\n"
        + table + "\n"
    )
    print(f"\n{table}\n\n[dmf] results: {run_dir / 'results.md'}\n[dmf] sample grids: {run_dir / 'samples'}\n"
          f"[dmf] checkpoints and logs: {run_dir / 'flow'}, {run_dir / 'dmf'}")
    return rows
