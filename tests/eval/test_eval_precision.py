"""eval.precision is the network's: feature extractors and the decoder always run in full fp32 (no TF32, no autocast),
whatever the caller has switched on."""
import torch

from dmf.eval.scoring.features.base import FeatureExtractor
from dmf.eval.generation.loop import Plan, Renderer
from dmf.eval.scoring.metrics import Frechet
from dmf.eval.generation.precision import tf32
from dmf.eval.scoring.scorer import Scorer


def flags():
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.is_autocast_enabled("cpu"))


class Recording(FeatureExtractor):
    dims = {"f": 2}

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        self.seen.append(flags())
        return {"f": images.float().flatten(1)[:, :2]}


def test_features_run_in_fp32_inside_a_tf32_and_autocast_region():
    ext = Recording()
    scorer = Scorer({"fd": Frechet("rec", "f")}, {"rec": ext})
    states = scorer.new_states()
    images = torch.randint(0, 255, (3, 3, 4, 4), dtype=torch.uint8)
    with tf32(True), torch.autocast("cpu", dtype=torch.bfloat16):
        scorer.update(states, images, torch.zeros(3, dtype=torch.long), torch.arange(3))
        assert flags() == (True, True, True)  # the caller's settings come back
    assert ext.seen == [(False, False, False)]


class RecordingSampler:
    steps, name = 1, "rec"

    def __init__(self):
        self.seen = []

    def __call__(self, net, noise, y):
        self.seen.append(flags()[:2])
        return noise


class RecordingVAE:
    def __init__(self):
        self.seen = []

    def decode(self, x):
        self.seen.append(flags()[:2])
        return x.clamp(-1, 1)


def test_tf32_reaches_the_network_only():
    sampler, vae = RecordingSampler(), RecordingVAE()
    plan = Plan(4, 0, (1, 4, 4), 10, batch_size=4, chunk_size=4)
    with tf32(False):
        Renderer(None, sampler, vae, "cpu", tf32=True)(plan, torch.arange(4))
        assert flags()[:2] == (False, False)
    assert sampler.seen == [(True, True)] and vae.seen == [(False, False)]
