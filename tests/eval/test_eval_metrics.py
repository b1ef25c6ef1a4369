"""Fréchet distance, Inception Score and precision/recall against reference implementations and known answers."""
import numpy as np
import pytest
import scipy.linalg
import torch

from dmf.eval.scoring.gaussian import frechet_distance
from dmf.eval.scoring.metrics import ClassAccuracy, Frechet, InceptionScore, PrecisionRecall, precision_recall
from dmf.eval.scoring.metrics.frechet import FrechetState
from dmf.eval.scoring.metrics.inception_score import InceptionScoreState


def random_stats(rng, d):
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T / d + 0.1 * np.eye(d), rng.normal(size=d), b @ b.T / d + 0.1 * np.eye(d)


def scipy_reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [4, 64])
def test_frechet_matches_scipy(d):
    rng = np.random.default_rng(d)
    mu1, s1, mu2, s2 = random_stats(rng, d)
    ref = scipy_reference(mu1, s1, mu2, s2)
    assert abs(frechet_distance(mu1, s1, mu2, s2) - ref) <= 1e-6 * max(1.0, abs(ref))
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-6


def test_frechet_state_streams_and_merges_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)) * np.arange(1, 9)
    metric = Frechet("e", "f").bind("fd", 8)
    a, b = metric.new_state(), metric.new_state()
    for chunk in np.array_split(x[:100], 3):
        a.update(torch.from_numpy(chunk), None, None)
    b.update(torch.from_numpy(x[100:]), None, None)
    merged = FrechetState.from_dict(a.to_dict()).merge(b)
    np.testing.assert_allclose(merged.stats.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.stats.sigma, np.cov(x, rowvar=False), rtol=1e-10)
    ref = {"fd": {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)}}
    assert abs(metric.compute(merged, ref)["fd"]) < 1e-6


def test_frechet_reference_dimension_mismatch_is_explained():
    metric = Frechet("inception", "pool").bind("fid", 8)
    with pytest.raises(ValueError, match="8-d"):
        metric.check_reference({"fid": {"mu": np.zeros(4), "sigma": np.eye(4)}}, "ref.pkl")
    with pytest.raises(ValueError, match="mode=ref_stats"):
        metric.check_reference({"fd_dinov2": {}}, "ref.pkl")


def is_of(logits, splits=10):
    metric = InceptionScore(splits=splits).bind("is", logits.shape[1])
    state = metric.new_state()
    idx = torch.arange(len(logits))
    for part in idx.split(37):
        state.update(logits[part], None, part)
    return metric.compute(state, None)


def test_inception_score_known_answers():
    assert is_of(torch.zeros(200, 5))["is"] == pytest.approx(1.0, abs=1e-9)
    one_hot = torch.full((400, 8), -1e4)
    one_hot[torch.arange(400), (torch.arange(400) // 10) % 8] = 1e4  # split i mod 10 sees all 8 classes evenly
    r = is_of(one_hot, splits=10)
    assert r["is"] == pytest.approx(8.0, rel=1e-6) and r["is_std"] < 1e-6


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1)) * 3
    ours = is_of(logits, splits=10)
    # our split of image i is i mod 10: reorder so that torch-fidelity's contiguous splits are the same sets
    order = torch.cat([torch.arange(s, 1000, 10) for s in range(10)])
    ref = isc_features_to_metric(logits[order], splits=10, shuffle=False)
    assert ours["is"] == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert ours["is_std"] == pytest.approx(ref["inception_score_std"], rel=1e-6)
    merged = InceptionScoreState.from_dict(InceptionScoreState(10, 16).to_dict())
    assert merged.n.sum() == 0


def test_precision_recall_known_answers():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 6, generator=g)
    assert precision_recall(real, real.clone(), k=3, device="cpu") == (1.0, 1.0)
    assert precision_recall(real, real + 100.0, k=3, device="cpu") == (0.0, 0.0)
    # fakes collapsed onto a few real points: all precise (covered), but they cover few of the reals
    fake = real[:5].repeat(40, 1) + 1e-3 * torch.randn(200, 6, generator=g)
    p, r = precision_recall(real, fake, k=3, device="cpu")
    assert p == 1.0 and r < 0.2


def test_precision_recall_matches_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(300, 10, generator=g), 0.8 * torch.randn(250, 10, generator=g) + 0.3
    ours = precision_recall(real, fake, k=3, batch=64, device="cpu")
    ref = calculate_precision_recall_full(fake, real, neighborhood=3, batch_size=10000)
    assert ours == pytest.approx(ref, abs=1e-12)


def test_precision_recall_state_is_order_independent_and_capped():
    metric = PrecisionRecall("e", "f", max_samples=50).bind("pr", 3)
    feats = torch.randn(80, 3, generator=torch.Generator().manual_seed(0))
    a, b = metric.new_state(), metric.new_state()
    a.update(feats[40:], None, torch.arange(40, 80))
    b.update(feats[:40], None, torch.arange(40))
    idx, f = a.merge(b).arrays()
    assert idx.tolist() == list(range(50))
    np.testing.assert_array_equal(f, feats[:50].numpy())


def test_class_accuracy():
    metric = ClassAccuracy("e", "logits").bind("acc", 3)
    state = metric.new_state()
    state.update(torch.eye(3)[[0, 1, 2, 0]], torch.tensor([0, 1, 0, 0]), None)
    assert metric.compute(state, None) == {"acc": 0.75}
