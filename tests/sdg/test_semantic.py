"""Guidance objectives: each gradient step raises its F; per-sample independence; dtypes; argument checks."""

from __future__ import annotations

import copy

import pytest
import torch

from syncguide.guidance.semantic import (
    ContentGuidance,
    MultiGuidance,
    StyleGuidance,
    TextGuidance,
    gram,
    guidance_gradient,
)
from syncguide.models.noise_aware import NoiseAwareCLIP

ABAR = torch.linspace(0.999, 0.01, 1000)


def _images(seed: int, n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _guidances(encoder, weight: float = 1.0) -> dict:
    ref = _images(99, 1).to(encoder.time_mlp[0].weight.dtype if hasattr(encoder, "time_mlp") else torch.float32)
    return {
        "text": TextGuidance(weight=weight, encoder=encoder, text="a photo of snow"),
        "content": ContentGuidance(weight=weight, encoder=encoder, reference=ref, alphas_cumprod=ABAR),
        "style": StyleGuidance(weight=weight, encoder=encoder, reference=ref, alphas_cumprod=ABAR),
        "multi": MultiGuidance(
            parts=[
                TextGuidance(weight=weight, encoder=encoder, text="a photo of snow"),
                StyleGuidance(weight=weight, encoder=encoder, reference=ref, alphas_cumprod=ABAR),
            ]
        ),
    }


@pytest.mark.parametrize("name", ["text", "content", "style", "multi"])
def test_gradient_step_raises_objective(noise_aware: NoiseAwareCLIP, name: str) -> None:
    # float64: tiny random towers give nearly constant embeddings, so the first-order gain is below fp32 rounding.
    guidance = _guidances(noise_aware.double())[name]
    x, t = _images(0).double(), torch.tensor([300, 700])

    def value(images: torch.Tensor) -> torch.Tensor:
        # Reference noise redrawn identically each time, so F is a fixed function of x.
        for part in getattr(guidance, "parts", [guidance]):
            part.generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            return guidance(images, t)

    for part in getattr(guidance, "parts", [guidance]):
        part.generator = torch.Generator().manual_seed(5)
    grad = guidance_gradient(guidance, x, t, 0, 1)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    step = 1e-2 / grad.abs().max()
    assert torch.all(value(x + step * grad) > value(x))


def test_weight_scales_objective_and_inactive_window_gives_none(tower) -> None:
    x = _images(1)
    one = TextGuidance(weight=1.0, encoder=tower, text="snow")
    three = TextGuidance(weight=3.0, encoder=tower, text="snow")
    torch.testing.assert_close(three(x, None), 3 * one(x, None))
    late = TextGuidance(weight=1.0, steps=(0.5, 1.0), encoder=tower, text="snow")
    assert late(x, None, i=4, n=10) is None and late(x, None, i=5, n=10) is not None
    assert guidance_gradient(late, x, None, 0, 10) is None
    assert guidance_gradient(TextGuidance(weight=0.0, encoder=tower, text="snow"), x, None, 9, 10) is None


def test_style_of_a_sample_ignores_its_batch_mates(tower) -> None:
    style = StyleGuidance(encoder=tower, reference=_images(7, 1))
    x = _images(2, 1)
    alone = style(x, None)
    with_mates = style(torch.cat([x, _images(3, 3)]), None)
    torch.testing.assert_close(with_mates[:1], alone, rtol=1e-5, atol=1e-7)
    grad_alone = guidance_gradient(style, x, None, 0, 1)
    grad_mates = guidance_gradient(style, torch.cat([x, _images(4, 2)]), None, 0, 1)
    torch.testing.assert_close(grad_mates[:1], grad_alone, rtol=1e-4, atol=1e-7)


def test_gram_is_per_sample_and_normalised() -> None:
    f = torch.randn(3, 5, 7)
    g = gram(f)
    assert g.shape == (3, 5, 5)
    torch.testing.assert_close(g[1], f[1] @ f[1].T / 35)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_guidance_runs_in_fp32_and_bf16(tower, dtype: torch.dtype) -> None:
    reference_values = {name: g(_images(0), None) for name, g in _guidances(copy.deepcopy(tower)).items()}
    encoder = NoiseAwareCLIP(tower).to(dtype)
    x, t = _images(0).to(dtype), torch.tensor([100, 900])
    for name, guidance in _guidances(encoder).items():
        grad = guidance_gradient(guidance, x, t, 0, 1)
        assert grad.dtype == torch.float32 and torch.isfinite(grad).all(), name
        value = guidance(x, None)
        assert torch.isfinite(value).all(), name
        tol = 1e-5 if dtype == torch.float32 else 0.1
        torch.testing.assert_close(value.float(), reference_values[name], rtol=tol, atol=tol * 1e-2 + 1e-6)


def test_bad_arguments_are_refused(tower) -> None:
    with pytest.raises(ValueError, match="weight must be >= 0"):
        TextGuidance(weight=-1.0, encoder=tower, text="snow")
    with pytest.raises(ValueError, match="steps must be"):
        TextGuidance(steps=(0.5, 0.2), encoder=tower, text="snow")
    with pytest.raises(ValueError, match="needs a CLIP encoder"):
        TextGuidance(text="snow")
    with pytest.raises(ValueError, match="non-empty prompt"):
        TextGuidance(encoder=tower, text=" ")
    with pytest.raises(ValueError, match="reference must be an image tensor"):
        StyleGuidance(encoder=tower, reference=torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="at least one guidance"):
        MultiGuidance(parts=[])
    content = ContentGuidance(encoder=tower, reference=_images(0, 1))
    with pytest.raises(ValueError, match="alphas_cumprod is needed"):
        content(_images(1), torch.tensor([10, 10]))
