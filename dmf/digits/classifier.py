"""A small CNN trained on the real digits: its 64-d penultimate features give the digits Fréchet distance,
its predictions the class accuracy of generated samples. Trained once (about 20 s on 2 cores) and cached."""
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from dmf.core.cache import cache_dir
from dmf.core.files import atomic_path
from dmf.digits.data import load_digits_tensors
from dmf.models.checkpoint import safe_load

FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, FEATURE_DIM, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.clamp(-1, 1))

    def forward(self, x):
        return self.head(self.features(x))


def default_cache() -> Path:
    return cache_dir() / "digits_classifier.pt"


def train_classifier(epochs: int = 40, seed: int = 0) -> tuple[DigitsClassifier, float]:
    """Train on a fixed 80 % split with small shifts as augmentation; return the net and held-out accuracy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = load_digits_tensors()
    perm = torch.randperm(len(x), generator=g)
    n_train = int(0.8 * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            xb, yb = x[order[i:i + 64]], y[order[i:i + 64]]
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x[te]).argmax(1) == y[te]).float().mean().item()
    return net, acc


def load_classifier(path: Path | None = None) -> DigitsClassifier:
    """The cached classifier, trained and saved on first use (written atomically)."""
    path = Path(path or default_cache())
    if path.exists():
        net = DigitsClassifier()
        net.load_state_dict(safe_load(path)["state_dict"])
        return net.eval()
    print(f"[dmf] training the digit classifier of the digits scores once (~20 s on 2 free cores), cached at {path}",
          flush=True)
    net, acc = train_classifier()
    with atomic_path(path) as tmp:
        torch.save({"state_dict": net.state_dict(), "heldout_accuracy": acc}, tmp)
    print(f"[dmf] digit classifier: held-out accuracy {acc:.1%}", flush=True)
    return net
