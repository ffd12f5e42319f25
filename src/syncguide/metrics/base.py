"""Shared pieces of the metric classes: a thin ``torchmetrics.Metric`` base and the "mean of per-item scores" state."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchmetrics
from torchmetrics.utilities.data import dim_zero_cat

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A perceptual distance ``(a, b) -> (B,)`` (or ``(B, 1, 1, 1)``) on image batches ``(B, 3, H, W)`` in [-1, 1]."""
StyleFeatures = Callable[[torch.Tensor], list[torch.Tensor]]
"""Feature maps ``[(B, C, h, w), ...]`` of images ``(B, 3, H, W)`` in [0, 1], for Gram matrices."""
Features = Callable[[torch.Tensor], torch.Tensor]
"""Feature vectors ``(B, D)`` of images ``(B, 3, H, W)`` in [0, 1]."""


class Metric(torchmetrics.Metric):
    """Base of the syncguide metrics: no full-state updates, not differentiable, computed without gradients."""

    full_state_update: bool = False
    is_differentiable: bool = False
    name: str = ""
    """A short label for reports (e.g. ``"Intra-Style-L (sum over pairs)"``)."""


class MeanScore(Metric):
    """A metric that is the mean over items of a per-item score; subclasses call ``_add(scores)`` in ``update``."""

    scores: list[torch.Tensor]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def _add(self, scores: torch.Tensor) -> None:
        self.scores.append(scores.detach().double().reshape(-1))

    def compute(self) -> torch.Tensor:
        """The mean score over every item seen (float64 scalar); ValueError before any update."""
        if not self.scores:
            raise ValueError(f"{type(self).__name__}.compute() needs at least one update()")
        return dim_zero_cat(self.scores).mean()


def cat_state(values: list[torch.Tensor] | torch.Tensor, what: str) -> torch.Tensor:
    """The concatenation of a list state; ValueError naming ``what`` when nothing was added."""
    if isinstance(values, list) and not values:
        raise ValueError(f"no {what} were added: call update() first")
    return dim_zero_cat(values)


def features_of(net: Features | None, images: torch.Tensor | None, features: torch.Tensor | None) -> torch.Tensor:
    """``features`` if given, else ``net(images)`` (without gradients); ValueError unless exactly one is given."""
    if (images is None) == (features is None):
        raise ValueError("give exactly one of images and features")
    if features is not None:
        return features.detach()
    if net is None:
        raise ValueError("this metric has no features network (features_net=None): pass features= instead of images")
    with torch.no_grad():
        return net(images)
