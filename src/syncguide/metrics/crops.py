"""Crops of panoramas for the panorama metrics: window-size squares, (B, 3, H, W) images in [0, 1]."""

from __future__ import annotations

import torch


def window_count(panoramas: torch.Tensor, size: int, name: str = "panoramas") -> int:
    """The number of window crops ``W // size`` of ``panoramas`` ``(B, 3, H, W)``; ValueError unless H == size and
    W is a positive multiple of ``size``."""
    if panoramas.ndim != 4 or panoramas.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W); got {tuple(panoramas.shape)}")
    height, width = panoramas.shape[-2:]
    if size <= 0 or height != size:
        raise ValueError(f"{name} height must equal the crop size {size}; got {height}")
    if width % size or width == 0:
        raise ValueError(f"{name} width must be a positive multiple of the crop size {size}; got {width}")
    return width // size


def window_crops(panoramas: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping ``size`` x ``size`` crops, left to right: ``(B, 3, size, W)`` -> ``(B, n, 3, size, size)``,
    n = W // size."""
    n = window_count(panoramas, size)
    batch = panoramas.shape[0]
    return panoramas.reshape(batch, 3, size, n, size).permute(0, 3, 1, 2, 4)


def random_crops(panoramas: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One ``size`` x ``size`` crop per panorama, ``(B, 3, size, W)`` -> ``(B, 3, size, size)``.

    Each horizontal offset is drawn uniformly from 0..W-size (inclusive) with ``generator`` (on the CPU), so crops
    may straddle window boundaries, as the FID/KID/CLIP-S protocol's random crop does.
    """
    window_count(panoramas, size)
    width = panoramas.shape[-1]
    offsets = torch.randint(0, width - size + 1, (panoramas.shape[0],), generator=generator).tolist()
    return torch.stack([image[..., x : x + size] for image, x in zip(panoramas, offsets, strict=True)])
