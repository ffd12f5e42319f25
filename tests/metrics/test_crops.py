from __future__ import annotations

import pytest
import torch

from syncguide.metrics import random_crops, window_crops


def test_window_crops_cut_left_to_right() -> None:
    panoramas = torch.rand(2, 3, 8, 24)
    crops = window_crops(panoramas, 8)
    assert crops.shape == (2, 3, 3, 8, 8)
    for k in range(3):
        assert torch.equal(crops[:, k], panoramas[..., 8 * k : 8 * (k + 1)])


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 3, 8, 20), "width must be a positive multiple"), ((2, 3, 16, 24), "height"), ((3, 8, 24), "shape")],
)
def test_bad_panoramas_name_the_rule(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"panoramas.*{message}"):
        window_crops(torch.rand(*shape), 8)
    with pytest.raises(ValueError, match=message):
        random_crops(torch.rand(*shape), 8, torch.Generator())


def test_random_crops_are_windows_at_drawn_offsets() -> None:
    panoramas = torch.arange(24.0).expand(64, 3, 8, 24).clone()  # pixel value = its column
    crops = random_crops(panoramas, 8, torch.Generator().manual_seed(0))
    assert crops.shape == (64, 3, 8, 8)
    offsets = crops[:, 0, 0, 0]
    assert torch.equal(crops, (offsets[:, None, None, None] + torch.arange(8.0)).expand_as(crops))
    assert offsets.min() == 0 and offsets.max() == 16 and len(offsets.unique()) > 8  # every offset 0..W-size
    again = random_crops(panoramas, 8, torch.Generator().manual_seed(0))
    assert torch.equal(crops, again)
