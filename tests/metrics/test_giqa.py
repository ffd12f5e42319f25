from __future__ import annotations

import pytest
import torch

from syncguide.metrics import MeanGIQA, knn_giqa
from syncguide.metrics.giqa import EPSILON


def brute_force(features: torch.Tensor, reference: torch.Tensor, k: int) -> list[float]:
    scores = []
    for f in features.tolist():
        distances = sorted(sum(abs(x - y) for x, y in zip(f, r, strict=True)) for r in reference.tolist())
        scores.append(sum(1 / max(d, EPSILON) for d in distances[:k]))
    return scores


def test_knn_giqa_equals_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    features, reference = torch.randn(7, 5, generator=generator), torch.randn(30, 5, generator=generator)
    scores = knn_giqa(features, reference, k=8, chunk=3)
    assert scores.shape == (7,)
    assert torch.allclose(scores, torch.tensor(brute_force(features, reference, 8), dtype=torch.float64), rtol=1e-12)


def test_knn_giqa_small_reference_and_exact_match() -> None:
    reference = torch.randn(4, 3)
    features = torch.cat([reference[:1], torch.randn(2, 3)])
    scores = knn_giqa(features, reference, k=8)  # k clipped to the 4 reference rows
    expected = torch.tensor(brute_force(features, reference, 4), dtype=torch.float64)
    assert torch.allclose(scores, expected) and torch.isfinite(scores).all()
    assert scores[0] >= 1 / EPSILON  # distance 0 is guarded, not infinite


def test_knn_giqa_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="reference must have shape"):
        knn_giqa(torch.randn(2, 3), torch.randn(3))
    with pytest.raises(ValueError, match="same D"):
        knn_giqa(torch.randn(2, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="k must be"):
        knn_giqa(torch.randn(2, 3), torch.randn(5, 3), k=0)


def test_mean_giqa_class_accumulates_like_the_function() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 6))
    images, reference = torch.rand(10, 3, 4, 4), torch.randn(20, 6)
    metric = MeanGIQA(net, reference, k=8)
    for batch in images.split(3):
        metric.update(batch)
    with torch.no_grad():
        expected = knn_giqa(net(images), reference, 8).mean()
    assert torch.allclose(metric.compute(), expected)
    assert MeanGIQA.higher_is_better
    cached = MeanGIQA(None, reference)
    with torch.no_grad():
        cached.update_features(net(images))
    assert torch.allclose(cached.compute(), expected)
