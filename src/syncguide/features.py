"""Statistics of feature maps shared by guidance and metrics (no dependency on either).

References:
    Gatys, Ecker, Bethge, "A Neural Algorithm of Artistic Style" (2015): the Gram matrix as a style statistic.
"""

from __future__ import annotations

import torch

__all__ = ["gram"]


def gram(features: torch.Tensor) -> torch.Tensor:
    """Per-sample Gram matrices ``F F^T / (C * N)`` ``(B, C, C)`` of feature maps ``(B, C, h, w)`` or ``(B, C, N)``
    (N = h * w positions).

    Computed in at least float32 (half-precision Grams overflow and lose the small entries); float64 stays
    float64. Differentiable; a sample's Gram depends only on that sample.
    """
    flat = features.flatten(2)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    channels, positions = flat.shape[1:]
    return flat @ flat.transpose(1, 2) / (channels * positions)
