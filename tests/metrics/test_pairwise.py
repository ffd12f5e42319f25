from __future__ import annotations

import itertools
import warnings

import lpips
import pytest
import torch
import torch.nn.functional as F

from syncguide.metrics import IntraLPIPS, IntraStyleL, LPIPSDiversity, gram
from syncguide.metrics.pairwise import intra_lpips, intra_style_loss, lpips_diversity
from syncguide.metrics.reference_networks import VGG19Style

CROP = 32  # as the panoramas fixture (conftest.py)


@pytest.fixture(scope="module")
def reference_lpips() -> torch.nn.Module:
    """The lpips package's own LPIPS-VGG, random trunk seeded as ``lpips_vgg(pretrained_trunk=False)`` seeds it."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated `pretrained=`
        return lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()


@pytest.fixture(scope="module")
def vgg_style() -> VGG19Style:
    torch.manual_seed(0)
    return VGG19Style()


def reference_style_loss(style: VGG19Style, crop1: torch.Tensor, crop2: torch.Tensor) -> float:
    """SyncDiffusion's eval_style_loss.py on one pair (batch of 1): Gram = mm(F, F^T) / (a*b*c*d), MSE, summed."""
    total = 0.0
    for f1, f2 in zip(style(crop1[None]), style(crop2[None]), strict=True):
        a, b, c, d = f1.size()
        g1 = torch.mm(f1.view(a * b, c * d), f1.view(a * b, c * d).t()).div(a * b * c * d)
        g2 = torch.mm(f2.view(a * b, c * d), f2.view(a * b, c * d).t()).div(a * b * c * d)
        total += float(F.mse_loss(g2, g1))
    return total


def test_intra_lpips_equals_the_lpips_package(panoramas, random_lpips, reference_lpips) -> None:
    values = intra_lpips(panoramas, random_lpips, CROP)
    crops = [panoramas[..., k * CROP : (k + 1) * CROP] for k in range(3)]
    with torch.no_grad():
        pairs = [
            reference_lpips(crops[i], crops[j], normalize=True).flatten()
            for i, j in itertools.combinations(range(3), 2)
        ]
    expected = torch.stack(pairs).double().mean(0)
    assert values.shape == (2,) and (values > 0).all()
    assert torch.allclose(values, expected, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_intra_style_loss_equals_the_reference_code(panoramas, vgg_style, reduction) -> None:
    values = intra_style_loss(panoramas, vgg_style, CROP, reduction)
    with torch.no_grad():
        for b in range(2):
            crops = [panoramas[b, :, :, k * CROP : (k + 1) * CROP] for k in range(3)]
            pairs = [
                reference_style_loss(vgg_style, crops[i], crops[j]) for i, j in itertools.combinations(range(3), 2)
            ]
            expected = sum(pairs) if reduction == "sum" else sum(pairs) / len(pairs)
            assert values[b].item() == pytest.approx(expected, rel=1e-5)


def test_gram_is_float32_for_half_features() -> None:
    features = torch.rand(2, 4, 3, 5).half()
    g = gram(features)
    assert g.dtype == torch.float32 and g.shape == (2, 4, 4)
    flat = features.float().flatten(2)
    assert torch.allclose(g, flat @ flat.transpose(1, 2) / 60)


def test_identical_crops_score_zero(repeated, random_lpips, vgg_style) -> None:
    assert torch.equal(intra_lpips(repeated, random_lpips, CROP), torch.zeros(2, dtype=torch.float64))
    for reduction in ("sum", "mean"):
        assert torch.equal(intra_style_loss(repeated, vgg_style, CROP, reduction), torch.zeros(2, dtype=torch.float64))
    images = torch.rand(2, 3, CROP, CROP).repeat_interleave(3, dim=0)
    assert lpips_diversity(images, torch.tensor([0, 0, 0, 1, 1, 1]), random_lpips) == 0.0


def test_lpips_diversity_is_the_mean_over_groups_of_pairwise_means(random_lpips) -> None:
    images = torch.rand(6, 3, CROP, CROP, generator=torch.Generator().manual_seed(2))
    groups = torch.tensor([0, 1, 0, 1, 0, 2])  # group 2 has no pair and is skipped
    with torch.no_grad():
        d = lambda i, j: float(random_lpips(images[i : i + 1] * 2 - 1, images[j : j + 1] * 2 - 1))  # noqa: E731
        expected = ((d(0, 2) + d(0, 4) + d(2, 4)) / 3 + d(1, 3)) / 2
    assert lpips_diversity(images, groups, random_lpips) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        lpips_diversity(images[:3], torch.tensor([0, 1, 2]), random_lpips)
    with pytest.raises(ValueError, match="groups must be an integer tensor"):
        lpips_diversity(images, groups.float(), random_lpips)


def test_pairwise_errors_name_the_rule(random_lpips, vgg_style) -> None:
    with pytest.raises(ValueError, match="panoramas width must be a positive multiple of the crop size"):
        intra_lpips(torch.rand(1, 3, CROP, 2 * CROP + 1), random_lpips, CROP)
    with pytest.raises(ValueError, match="at least 2 crops"):
        intra_style_loss(torch.rand(1, 3, CROP, CROP), vgg_style, CROP)
    with pytest.raises(ValueError, match="reduction must be"):
        intra_style_loss(torch.rand(1, 3, CROP, 2 * CROP), vgg_style, CROP, "max")


def test_classes_accumulate_like_one_call(panoramas, random_lpips, vgg_style) -> None:
    more = torch.cat([panoramas, panoramas.flip(-1)])
    for metric, function in (
        (IntraLPIPS(random_lpips, CROP), lambda x: intra_lpips(x, random_lpips, CROP)),
        (IntraStyleL(vgg_style, CROP, "mean"), lambda x: intra_style_loss(x, vgg_style, CROP, "mean")),
    ):
        for batch in more.split(3):
            metric.update(batch)
        assert torch.allclose(metric.compute(), function(more).mean())
        assert metric.higher_is_better is False
    assert "sum over crop pairs" in IntraStyleL(vgg_style, CROP).name
    assert "mean over crop pairs" in IntraStyleL(vgg_style, CROP, "mean").name

    images = torch.rand(6, 3, CROP, CROP, generator=torch.Generator().manual_seed(3))
    groups = torch.tensor([0, 1, 0, 1, 1, 0])
    diversity = LPIPSDiversity(random_lpips)
    diversity.update(images[:2], groups[:2])  # every group's pairs span the two updates
    diversity.update(images[2:], groups[2:])
    assert diversity.compute().item() == pytest.approx(lpips_diversity(images, groups, random_lpips), rel=1e-9)
