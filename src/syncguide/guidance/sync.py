"""SyncDiffusion's synchronisation: pull every window's predicted clean image towards the anchor's.

References:
    Lee, Kim, Kim, Sung, "SyncDiffusion: Coherent Montage via Synchronized Joint Diffusions", NeurIPS 2023,
    Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from syncguide.guidance.perceptual import PerceptualLoss, per_image
from syncguide.parallel import Workers

# to_image(x, rows) -> decoded x0 prediction of the noisy window latents x (rows of the window stack), in [0, 1].
ToImage = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SyncSchedule:
    """When and how strongly to synchronise: step i uses weight ``weight * decay**i``.

    Sync runs at step i when ``i < steps`` and ``(i + 1) % every == 0``; ``steps=None`` means every step.
    """

    weight: float = 20.0
    decay: float = 0.95
    steps: int | None = None
    every: int = 1

    def __post_init__(self) -> None:
        for name in ("weight", "decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"sync_{name} must be >= 0; got {getattr(self, name)}")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"sync_steps must be >= 0; got {self.steps}")
        if self.every < 1:
            raise ValueError(f"sync_every must be >= 1; got {self.every}")

    def weight_at(self, step: int) -> float:
        """The gradient weight w_i at denoising step ``step``; 0 where sync is inactive."""
        active = (self.steps is None or step < self.steps) and (step + 1) % self.every == 0
        return self.weight * self.decay**step if active else 0.0


def synchronize(
    views: torch.Tensor,
    n_windows: int,
    anchor: int,
    to_image: ToImage,
    loss: PerceptualLoss,
    weight: float,
    batch_size: int,
    workers: Workers | None = None,
) -> torch.Tensor:
    """One SyncDiffusion gradient step on every non-anchor window.

    Args:
        views: noisy window latents ``(N * B, C, h, w)``, window-major (B images per window).
        n_windows: N.
        anchor: index of the anchor window; its latents are returned unchanged and get no gradient work.
        to_image: decoded x0 prediction in [0, 1] of latents ``x`` (rows ``rows`` of ``views``).
        loss: perceptual distance on [-1, 1] images, one value per image.
        weight: step size w_i; the raw gradient is used (no normalisation or clipping, as in the paper).
        batch_size: windows per gradient pass (bounds memory).
        workers: processes sharing the work (:mod:`syncguide.parallel`): the anchor window's owner computes the
            anchor image and broadcasts it; each process takes its share of the gradient passes.
    Returns:
        ``(N * B, C, h, w)``: ``x_j - weight * d loss(img_j, img_anchor) / d x_j`` for j != anchor.
    """
    workers = workers or Workers()
    b = views.shape[0] // n_windows
    anchor_rows = torch.arange(anchor * b, (anchor + 1) * b)
    with torch.no_grad():
        owner = workers.owner(anchor, n_windows)
        target = workers.broadcast(owner, lambda: to_image(views[anchor_rows], anchor_rows)) * 2 - 1
    others = [j for j in range(n_windows) if j != anchor]
    chunks = [others[start : start + batch_size] for start in range(0, len(others), batch_size)]
    passes = [torch.tensor([j * b + k for j in chunk for k in range(b)]) for chunk in chunks]

    def step(k: int) -> torch.Tensor:
        x = views[passes[k]].detach().requires_grad_(True)
        with torch.enable_grad():
            images = to_image(x, passes[k]) * 2 - 1
            distance = per_image(loss, images, target.repeat(len(chunks[k]), 1, 1, 1))
            (grad,) = torch.autograd.grad(distance.sum(), x)
        return (x - weight * grad).detach()

    return workers.map_rows(step, passes, views.detach().clone())
