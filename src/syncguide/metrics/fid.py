"""FID (fidelity and diversity; lower is better) on feature vectors, and its metric class.

Our own implementation rather than a wrapper of torchmetrics' ``FrechetInceptionDistance``: the eval command
computes each image's features once, caches them for resumable runs and shares them between FID, KID and GIQA.
``tests/metrics`` checks it against torchmetrics on identical features.
"""

from __future__ import annotations

import torch

from syncguide.metrics.base import Features, Metric, cat_state, features_of
from syncguide.metrics.frechet import frechet_distance


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between features ``a`` ``(N, D)`` (samples) and ``b`` ``(M, D)`` (reference); N, M >= 2; symmetric."""
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2:
            raise ValueError(f"{name} must have shape (N, D); got {tuple(x.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same feature size D; got {a.shape[1]} and {b.shape[1]}")
    return frechet_distance(a, b)


class FeatureSets(Metric):
    """Base of FID and KID: keeps the features of real (reference) and generated images.

    ``update(images, real)`` with images ``(B, 3, H, W)`` in [0, 1] (through ``features_net``), or
    ``update(None, real, features=...)`` / ``update_features(features, real)`` with precomputed ``(B, D)``.
    """

    real_features: list[torch.Tensor]
    fake_features: list[torch.Tensor]

    def __init__(self, features_net: Features | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.features_net = features_net
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor | None, real: bool, features: torch.Tensor | None = None) -> None:
        found = features_of(self.features_net, images, features)
        if found.ndim != 2:
            raise ValueError(f"features must have shape (B, D); got {tuple(found.shape)}")
        (self.real_features if real else self.fake_features).append(found.double())

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed features ``(B, D)`` of real (reference) or generated images."""
        self.update(None, real, features=features)

    def _sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(generated, real)`` features."""
        return cat_state(self.fake_features, "generated features"), cat_state(self.real_features, "real features")


class FID(FeatureSets):
    """FID (lower is better) between the generated (``real=False``) and reference (``real=True``) images seen."""

    higher_is_better = False
    name = "FID"

    def compute(self) -> torch.Tensor:
        return torch.tensor(fid(*self._sets()), dtype=torch.float64)
