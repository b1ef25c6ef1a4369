"""Small pieces shared by the evaluation tests: a tiny DMFT, a cheap feature extractor, config composition."""
from pathlib import Path

import torch

from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.scoring.metrics import ClassAccuracy, Frechet, InceptionScore, PrecisionRecall
from dmf.eval.scoring.scorer import Scorer

ROOT = Path(__file__).resolve().parents[2]


class PixelFeatures(FeatureExtractor):
    """Mean colour of each 2x2 cell (12-d) and fixed random logits: fast, deterministic, non-degenerate."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.dims = {"pix": 12, "logits": num_classes}
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(12, num_classes, generator=g))

    def forward(self, images):
        self.check(images)
        x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 2).flatten(1)
        return {"pix": x, "logits": 40 * (x - 0.5) @ self.w}


def tiny_net(seed: int = 0):
    from dmf.models import build_model

    torch.manual_seed(seed)
    net = build_model("DMFT-T/2", input_size=8, in_channels=1, num_classes=10, dmf_depth=2, depth=3,
                      hidden_size=32, num_heads=2, attention="math")
    with torch.no_grad():  # DiT zero-inits the output: perturb so samples depend on the weights
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def pixel_scorer(pr_max: int | None = None) -> Scorer:
    metrics = {"fd_pix": Frechet("pixels", "pix"), "is": InceptionScore("pixels", "logits", splits=2),
               "acc": ClassAccuracy("pixels", "logits"), "pr": PrecisionRecall("pixels", "pix", max_samples=pr_max)}
    return Scorer(metrics, {"pixels": PixelFeatures()})


PIXEL_OVERRIDES = [
    "+eval.extractors.pixels._target_=tests.eval.eval_helpers.PixelFeatures",
    "+eval.metric_defs.fd_pix={_target_: dmf.eval.scoring.metrics.Frechet, extractor: pixels, feature: pix}",
    "+eval.metric_defs.acc_pix={_target_: dmf.eval.scoring.metrics.ClassAccuracy, extractor: pixels, feature: logits}",
]

TINY_MODEL = ["model.name=DMFT-T/2", "+model.depth=3", "+model.hidden_size=32", "+model.num_heads=2",
              "model.dmf_depth=2", "attention.backend=math"]


def compose(overrides: list[str]):
    """The real config tree, with the eval group added if conf/config.yaml does not list it yet."""
    from hydra import compose as hcompose, initialize_config_dir

    from dmf.config import register_resolvers

    register_resolvers()
    has_eval = "- eval:" in (ROOT / "conf" / "config.yaml").read_text()
    fixed = []
    for o in overrides:
        if o.startswith("eval=") and not has_eval:
            o = "+" + o
        fixed.append(o)
    if not has_eval and not any(o.startswith("+eval=") for o in fixed):
        fixed.insert(0, "+eval=default")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hcompose("config", overrides=fixed)
