"""The FID network: TF Inception-V3 (2015-12-05) as ported by torch-fidelity (bit-compatible with the TF graph,
the same network EDM2 and ADM use). Outputs the 2,048-d pool features (FID, precision/recall) and the
1,008-way logits without bias (Inception Score, as in the original IS code and torch-fidelity)."""
import torch

from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.scoring.features.weights import locate_weights
from dmf.models.checkpoint import safe_load

FILENAME = "weights-inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FILENAME}"


class InceptionV3(FeatureExtractor):
    dims = {"pool": 2048, "logits": 1008}

    def __init__(self, weights: str | None = None, download: bool = True):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = locate_weights(weights, FILENAME, URL, "Inception-V3", "eval.inception_weights", download)
        # torch-fidelity reads the file with weights_only=False; reading it as data first refuses a file that holds code
        safe_load(path, key="eval.inception_weights")
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                   feature_extractor_weights_path=str(path))
        except (RuntimeError, KeyError, OSError, EOFError) as err:
            raise RuntimeError(f"{path} is not a torch-fidelity Inception-V3 state dict ({FILENAME}): {err}") from err
        self.weights_path = str(path)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check(images)
        pool, logits = self.net(images)  # resizes to 299 internally (TF1-compatible bilinear)
        return {"pool": pool, "logits": logits}
