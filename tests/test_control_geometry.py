"""The control image's geometry (:mod:`syncguide.control`, issue 17's first slice): fitted to the canvas within an
aspect tolerance, and cropped per window as the latent windows are, wrapping in 360-degree mode."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from syncguide.control import ASPECT_TOLERANCE, fit_control_image, window_crops
from syncguide.errors import SettingError
from syncguide.sampling.plan import panorama_plan
from syncguide.tiling import crop_all, make_windows


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3),  # latent rows of windows
    st.integers(1, 6),  # windows wide
    st.sampled_from([1, 2, 4]),  # stride divisor of the window
    st.booleans(),
    st.integers(1, 2),  # images
)
def test_crops_are_the_latent_windows_in_pixels(rows: int, wide: int, divisor: int, circular: bool, b: int) -> None:
    """A control image that is the latent canvas upsampled by the VAE scale crops exactly to each window's latents
    upsampled the same way: the crops are latent-aligned and wrap where the windows wrap."""
    window, scale = 4, 2
    stride = window // divisor
    h, w = window + stride * (rows - 1), window * wide
    latents = torch.randn(b, 3, h, w)
    windows = make_windows(h, w, window, stride, circular)
    plan = panorama_plan(windows)
    image = latents.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    crops = window_crops(image, plan.positions(b, scale), window * scale, circular)
    expected = crop_all(latents, windows).repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    assert torch.equal(crops, expected)


def test_a_crop_past_the_edge_is_refused_unless_circular() -> None:
    image = torch.rand(1, 3, 8, 16)
    corner = torch.tensor([[0, 12]])
    assert torch.equal(window_crops(image, corner, 8, circular=True)[0], torch.cat([image, image], -1)[0, :, :, 12:20])
    with pytest.raises(ValueError, match="leaves the 16 px wide"):
        window_crops(image, corner, 8)


@given(st.floats(0.5, 2.0), st.integers(16, 64))
def test_fit_accepts_exactly_the_aspect_ratios_within_the_tolerance(stretch: float, height: int) -> None:
    canvas_h, canvas_w = 32, 96
    width = max(1, round(height * 3 * stretch))
    image = torch.rand(1, 3, height, width)
    ratio = (width / height) / (canvas_w / canvas_h)
    if abs(ratio - 1) > ASPECT_TOLERANCE:
        with pytest.raises(SettingError) as error:
            fit_control_image(image, canvas_h, canvas_w)
        assert error.value.setting == "control_image" and "may differ by 5%" in error.value.rule
    else:
        fitted = fit_control_image(image, canvas_h, canvas_w)
        assert fitted.shape == (1, 3, canvas_h, canvas_w)
        assert fitted.min() >= 0 and fitted.max() <= 1  # bilinear: a convex combination of the pixels


def test_fit_keeps_an_image_of_the_canvas_size_and_refuses_non_rgb() -> None:
    image = torch.rand(2, 3, 8, 24)
    assert fit_control_image(image, 8, 24) is image
    with pytest.raises(SettingError, match="RGB"):
        fit_control_image(torch.rand(1, 1, 8, 24), 8, 24)
