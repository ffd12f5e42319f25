"""Mean-GIQA (fidelity; higher is better): KNN-GIQA with K = 8 over Inception pool3 features.

The score of a feature is the sum, over its K nearest reference features by L1 distance, of 1 / distance (GIQA's
``knn_score``). No package implements it; ``tests/metrics`` checks it against a brute-force loop.

References:
    Gu et al., "GIQA: Generated Image Quality Assessment" (ECCV 2020).
"""

from __future__ import annotations

import torch

from syncguide.metrics.base import Features, MeanScore, features_of

EPSILON = 1e-12
"""Distances are clamped to at least this before 1 / distance, so a feature equal to a reference feature gets a
very large finite score instead of infinity."""


def _check_features(features: torch.Tensor, name: str) -> None:
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N >= 1; got {tuple(features.shape)}")


@torch.no_grad()
def knn_giqa(features: torch.Tensor, reference: torch.Tensor, k: int = 8, chunk: int = 256) -> torch.Tensor:
    """KNN-GIQA scores ``(N,)`` (float64) of ``features`` ``(N, D)`` against ``reference`` ``(M, D)``.

    ``score_i = sum over the k nearest reference rows r (L1 distance) of 1 / max(|f_i - r|_1, EPSILON)``. If the
    reference has fewer than ``k`` rows, all M are used (k = min(k, M)), so tiny smoke runs still give a number.
    ``chunk`` rows of ``features`` are compared at a time (memory N x M stays bounded).
    """
    _check_features(features, "features")
    _check_features(reference, "reference")
    if features.shape[1] != reference.shape[1]:
        raise ValueError(
            f"features and reference must have the same D; got {features.shape[1]} and {reference.shape[1]}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    k = min(k, reference.shape[0])
    reference = reference.double()
    scores = []
    for block in features.double().split(chunk):
        distances = torch.cdist(block, reference.to(block.device), p=1)
        nearest = distances.topk(k, dim=1, largest=False).values
        scores.append(nearest.clamp_min(EPSILON).reciprocal().sum(dim=1))
    return torch.cat(scores)


class MeanGIQA(MeanScore):
    """Mean-GIQA (fidelity; higher is better): the mean :func:`knn_giqa` score of every image (crop) seen.

    Args:
        features_net: images ``(B, 3, H, W)`` in [0, 1] -> features ``(B, D)`` (Inception pool3 for real numbers);
            may be None when only ``update_features`` is used.
        reference_features: ``(M, D)`` features of the reference images.
        k: neighbours (8 in SyncDiffusion).
    """

    higher_is_better = True
    name = "Mean-GIQA"

    def __init__(self, features_net: Features | None, reference_features: torch.Tensor, k: int = 8, **kwargs) -> None:
        _check_features(reference_features, "reference_features")
        super().__init__(**kwargs)
        self.features_net, self.k = features_net, int(k)
        self.register_buffer("reference", reference_features.detach().double(), persistent=False)

    def update(self, images: torch.Tensor | None = None, features: torch.Tensor | None = None) -> None:
        """Score images ``(B, 3, H, W)`` in [0, 1] (through ``features_net``) or precomputed ``features`` ``(B, D)``."""
        self._add(knn_giqa(features_of(self.features_net, images, features), self.reference, self.k))

    def update_features(self, features: torch.Tensor) -> None:
        """Score precomputed features ``(B, D)`` (the eval command computes each image's features once)."""
        self.update(features=features)
