"""FID and KID against torchmetrics on identical features (a custom feature-extractor module, nothing downloaded)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from syncguide.metrics import FID, KID, fid, kid


class Extractor(torch.nn.Module):
    """Images (B, 3, 8, 8) -> float64 features (B, 12): a fixed random projection of 4x4-pooled pixels."""

    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(48, 12, dtype=torch.float64)
        torch.nn.init.normal_(self.projection.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1).double())


@pytest.fixture
def sets() -> tuple[torch.Tensor, torch.Tensor]:
    """(generated, real) images in [0, 1]: two different distributions."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(40, 3, 8, 8, generator=generator) ** 2, torch.rand(30, 3, 8, 8, generator=generator)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def torchmetrics_kid(extractor, fake, real, **options) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features"
        metric = KernelInceptionDistance(feature=extractor, **options)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(options.get("seed", 0))
    mean, std = metric.compute()
    return float(mean), float(std)


def test_fid_equals_torchmetrics(sets) -> None:
    fake, real = sets
    extractor = Extractor()
    reference = FrechetInceptionDistance(feature=extractor)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected = float(reference.compute())
    with torch.no_grad():
        value = fid(extractor(fake), extractor(real))
    assert expected > 1 and rel(value, expected) <= 1e-4
    metric = FID(extractor)
    for batch in fake.split(16):
        metric.update(batch, real=False)
    metric.update(real, real=True)
    assert rel(float(metric.compute()), value) <= 1e-12
    assert FID.higher_is_better is False


def test_kid_equals_torchmetrics(sets) -> None:
    fake, real = sets
    extractor = Extractor()
    options = {"subsets": 7, "subset_size": 20, "degree": 3, "coef": 1.0}
    expected = torchmetrics_kid(extractor, fake, real, **options)
    with torch.no_grad():
        mean, std = kid(extractor(fake), extractor(real), seed=0, **options)
    assert expected[0] > 0 and rel(mean, expected[0]) <= 1e-4 and rel(std, expected[1]) <= 1e-4
    metric = KID(extractor, seed=0, **options)
    metric.update(real[:10], real=True)
    metric.update(fake, real=False)
    metric.update(real[10:], real=True)
    assert [float(v) for v in metric.compute()] == pytest.approx([mean, std], rel=1e-12)


def test_kid_subset_adapts_to_small_sets(sets) -> None:
    fake, real = sets[0][:5], sets[1][:7]
    extractor = Extractor()
    with torch.no_grad():
        a, b = extractor(fake), extractor(real)
    adapted = kid(a, b, subsets=4)  # subset_size 1000 > 5 samples: uses 5
    assert adapted == kid(a, b, subset_size=5, subsets=4)
    expected = torchmetrics_kid(extractor, fake, real, subsets=4, subset_size=5)
    assert rel(adapted[0], expected[0]) <= 1e-4


def test_feature_metrics_errors() -> None:
    with pytest.raises(ValueError, match="a must have shape"):
        kid(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="same feature size"):
        fid(torch.randn(5, 4), torch.randn(5, 3))
    metric = FID(None)
    with pytest.raises(ValueError, match="features="):
        metric.update(torch.rand(2, 3, 8, 8), real=True)
    metric.update_features(torch.randn(4, 3), real=True)
    with pytest.raises(ValueError, match="generated features"):
        metric.compute()
