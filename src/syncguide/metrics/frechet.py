"""Fréchet distance between two feature sets (FID when the features are Inception's pool3)."""

from __future__ import annotations

import torch


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of features ``a`` ``(N, D)`` and ``b`` ``(M, D)``.

    Computed in float64; the matrix square root's trace is the sum of the square roots of the eigenvalues of
    S_a S_b (as torchmetrics does). Needs N, M >= 2. Lower is better; 0 for identical sets.
    """
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("frechet_distance needs at least 2 feature vectors in each set")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    root_trace = torch.linalg.eigvals(s_a @ s_b).sqrt().real.sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * root_trace)
