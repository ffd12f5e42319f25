"""Pairwise metrics: Intra-LPIPS and Intra-Style-L (coherence of a panorama's crops), LPIPS diversity (SDG).

Every image input is float ``(B, 3, H, W)`` in [0, 1]. A ``distance`` is a callable on images in **[-1, 1]**
returning one distance per image (``(B,)`` or the lpips package's ``(B, 1, 1, 1)``), such as ``lpips.LPIPS``
or :class:`syncguide.guidance.perceptual.FeatureDistance`; the metrics convert their [0, 1] inputs before calling
it. A ``style`` network is a callable on images in [0, 1] returning a list of feature maps ``(B, C, h, w)``.

References:
    SyncDiffusion's evaluation code (``eval_intra_lpips.py``, ``eval_style_loss.py``); Gatys et al., "A Neural
    Algorithm of Artistic Style" (2015).
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch

from syncguide.features import gram
from syncguide.guidance.perceptual import per_image
from syncguide.metrics.base import Distance, MeanScore, Metric, StyleFeatures, cat_state
from syncguide.metrics.crops import window_crops

Reduction = Literal["sum", "mean"]
REDUCTION_LABELS = {"sum": "sum over crop pairs, as the SyncDiffusion reference", "mean": "mean over crop pairs"}


def _pairs(n: int) -> list[tuple[int, int]]:
    if n < 2:
        raise ValueError(f"a pairwise metric needs at least 2 crops per panorama (width >= 2 crops); got {n}")
    return list(itertools.combinations(range(n), 2))


@torch.no_grad()
def intra_lpips(panoramas: torch.Tensor, distance: Distance, crop: int) -> torch.Tensor:
    """Intra-LPIPS per panorama ``(B,)``: the mean of ``distance`` over all pairs of its window crops.

    Args:
        panoramas: ``(B, 3, crop, W)`` in [0, 1], W a multiple of ``crop`` with at least 2 crops.
        distance: a perceptual distance on [-1, 1] images (LPIPS-VGG for the papers' numbers).
        crop: the crop (window) size in pixels.
    """
    crops = window_crops(panoramas, crop) * 2 - 1
    pairs = _pairs(crops.shape[1])
    total = sum(per_image(distance, crops[:, i], crops[:, j]).double() for i, j in pairs)
    return total / len(pairs)


def _style_grams(crops: torch.Tensor, style: StyleFeatures) -> list[list[torch.Tensor]]:
    """Per crop index, the Gram matrices ``(B, C, C)`` of each style layer of crops ``(B, n, 3, s, s)``."""
    return [[gram(m) for m in style(crops[:, k])] for k in range(crops.shape[1])]


def style_loss(grams_a: list[torch.Tensor], grams_b: list[torch.Tensor]) -> torch.Tensor:
    """Gatys style loss ``(B,)``: the MSE between the Gram matrices of each layer, summed over layers."""
    return sum((a - b).square().mean(dim=(1, 2)) for a, b in zip(grams_a, grams_b, strict=True))


@torch.no_grad()
def intra_style_loss(
    panoramas: torch.Tensor, style: StyleFeatures, crop: int, reduction: Reduction = "sum"
) -> torch.Tensor:
    """Intra-Style-L per panorama ``(B,)``: the style loss between every pair of its window crops, reduced over pairs.

    ``reduction="sum"`` sums over the pairs as SyncDiffusion's reference does (15 pairs for 6 crops; the numbers
    papers report); ``"mean"`` averages over them (comparable across panorama widths).

    Args:
        panoramas: ``(B, 3, crop, W)`` in [0, 1], W a multiple of ``crop`` with at least 2 crops.
        style: feature maps of images in [0, 1] (VGG19 conv1_1 .. conv3_1 for the papers' numbers).
        crop: the crop (window) size in pixels.
        reduction: ``"sum"`` or ``"mean"`` over crop pairs.
    """
    if reduction not in REDUCTION_LABELS:
        raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
    crops = window_crops(panoramas, crop)
    pairs = _pairs(crops.shape[1])
    grams = _style_grams(crops, style)
    total = sum(style_loss(grams[i], grams[j]).double() for i, j in pairs)
    return total if reduction == "sum" else total / len(pairs)


def _check_groups(images: torch.Tensor, groups: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W); got {tuple(images.shape)}")
    if groups.shape != (images.shape[0],) or groups.dtype.is_floating_point:
        raise ValueError(f"groups must be an integer tensor of shape ({images.shape[0]},); got {tuple(groups.shape)}")


@torch.no_grad()
def lpips_diversity(images: torch.Tensor, groups: torch.Tensor, distance: Distance) -> float:
    """LPIPS diversity: per group, the mean ``distance`` over all pairs of its samples; then the mean over groups.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        groups: integer ``(B,)``: the id of the guidance input each sample was generated from. Groups with a single
            sample have no pair and are skipped; ValueError if no group has two samples.
        distance: a perceptual distance on [-1, 1] images.
    """
    _check_groups(images, groups)
    means = []
    for group in groups.unique():
        members = images[groups == group] * 2 - 1
        if len(members) < 2:
            continue
        first, second = zip(*itertools.combinations(range(len(members)), 2), strict=True)
        distances = per_image(distance, members[list(first)], members[list(second)]).double()
        means.append(distances.mean())
    if not means:
        raise ValueError("lpips_diversity needs a group with at least 2 samples; every group id in groups is unique")
    return float(torch.stack(means).mean())


class IntraLPIPS(MeanScore):
    """Intra-LPIPS (coherence; lower is better): mean over panoramas of :func:`intra_lpips`.

    ``update(panoramas)`` takes ``(B, 3, crop, W)`` in [0, 1]; ``compute()`` returns a scalar.
    """

    higher_is_better = False
    name = "Intra-LPIPS"

    def __init__(self, distance: Distance, crop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.distance, self.crop = distance, int(crop)

    def update(self, panoramas: torch.Tensor) -> None:
        self._add(intra_lpips(panoramas, self.distance, self.crop))


class IntraStyleL(MeanScore):
    """Intra-Style-L (coherence; lower is better): mean over panoramas of :func:`intra_style_loss` with
    ``reduction`` over crop pairs (``"sum"``: the reference's; ``"mean"``), labelled in ``name``."""

    higher_is_better = False

    def __init__(self, style: StyleFeatures, crop: int, reduction: Reduction = "sum", **kwargs) -> None:
        if reduction not in REDUCTION_LABELS:
            raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
        super().__init__(**kwargs)
        self.style, self.crop, self.reduction = style, int(crop), reduction
        self.name = f"Intra-Style-L ({REDUCTION_LABELS[reduction]})"

    def update(self, panoramas: torch.Tensor) -> None:
        self._add(intra_style_loss(panoramas, self.style, self.crop, self.reduction))


class LPIPSDiversity(Metric):
    """LPIPS diversity (higher is more diverse): :func:`lpips_diversity` over every sample seen.

    ``update(images, groups)``: images ``(B, 3, H, W)`` in [0, 1], integer group ids ``(B,)``. Samples of one group
    may arrive in different updates, so the images are kept until ``compute()`` (memory grows with the count).
    """

    higher_is_better = True
    name = "LPIPS diversity"
    images: list[torch.Tensor]
    groups: list[torch.Tensor]

    def __init__(self, distance: Distance, **kwargs) -> None:
        super().__init__(**kwargs)
        self.distance = distance
        self.add_state("images", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor, groups: torch.Tensor) -> None:
        _check_groups(images, groups)
        self.images.append(images.detach())
        self.groups.append(groups.detach().long())

    def compute(self) -> torch.Tensor:
        value = lpips_diversity(cat_state(self.images, "images"), cat_state(self.groups, "groups"), self.distance)
        return torch.tensor(value, dtype=torch.float64)
