import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from syncguide.guidance.perceptual import FeatureDistance, per_image


@pytest.fixture(scope="module")
def distance() -> FeatureDistance:
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    return FeatureDistance(CLIPVisionModel(config), image_size=32)


def test_feature_distance_is_a_distance(distance) -> None:
    a, b = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(distance(a, a), torch.zeros(3), atol=1e-6)
    d = per_image(distance, a, b)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(distance(b, a), d)


def test_feature_distance_is_differentiable(distance) -> None:
    a = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    before = distance(a, target)
    (grad,) = torch.autograd.grad(before.sum(), a)
    with torch.no_grad():
        after = distance(a - 0.05 * grad / grad.norm(), target)
    assert (after < before).all()


def test_random_lpips_is_reproducible() -> None:
    from syncguide.guidance.perceptual import lpips_vgg

    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(lpips_vgg(pretrained_trunk=False)(a, b), lpips_vgg(pretrained_trunk=False)(a, b))
