"""Measurements in the demo world made by the judge (the attribute classifier that nothing guides with)."""

from __future__ import annotations

from itertools import combinations

import torch

from syncguide.demo.judge import RESOLUTION, Judge
from syncguide.demo.world import GLOBAL_ATTRIBUTES
from syncguide.metrics.crops import window_crops

CROP = RESOLUTION
"""The judge's crop size (64 px: one crop of a demo panorama's height)."""


def crops(images: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Non-overlapping ``size``-wide crops of panoramas ``(B, 3, size, W)``: ``(B, W // size, 3, size, size)``
    (:func:`syncguide.metrics.crops.window_crops`; W must be a multiple of ``size``)."""
    return window_crops(images, size)


def crop_predictions(judge: Judge, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The judge's global-attribute predictions ``(B, n_crops)`` for panoramas ``(B, 3, 64, W)`` in [0, 1]."""
    tiles = crops(images)
    b, n = tiles.shape[:2]
    pred = judge.predict(tiles.reshape(b * n, *tiles.shape[2:]) * 2 - 1)
    return {name: pred[name].reshape(b, n) for name in GLOBAL_ATTRIBUTES}


def pair_agreement(labels: torch.Tensor) -> torch.Tensor:
    """Fraction of crop pairs with equal labels, per panorama: ``(B, n)`` -> ``(B,)`` in [0, 1]."""
    pairs = list(combinations(range(labels.shape[1]), 2))
    same = torch.stack([labels[:, i] == labels[:, j] for i, j in pairs], dim=1)
    return same.float().mean(dim=1)


def coherence(judge: Judge, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per panorama and global attribute, how often the judge gives two crops the same value ``(B,)``;
    ``"both"`` asks for time and season at once."""
    pred = crop_predictions(judge, images)
    out = {name: pair_agreement(labels) for name, labels in pred.items()}
    joint = pred["time"] * len(GLOBAL_ATTRIBUTES["season"]) + pred["season"]
    out["both"] = pair_agreement(joint)
    return out
