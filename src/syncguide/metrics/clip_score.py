"""Mean-CLIP-S (prompt compatibility; higher is better): ``max(100 * cos(image, text), 0)``, torchmetrics' CLIPScore.

``clip`` is a :class:`syncguide.models.clip_towers.CLIPTower`, whose ``embed`` (images in [-1, 1], any size, resized
bilinearly) and ``embed_text`` return unnormalised embeddings; the score normalises both.

The clamp at 0 is per image, as torchmetrics' functional ``clip_score`` of one image; torchmetrics' classes clamp
the batch mean instead, which is the same whenever every cosine is positive (as with real CLIPs on real prompts).
Our own implementation: torchmetrics 1.9's CLIPScore expects ``get_image_features`` to return a tensor, which
transformers 5 no longer does, and it re-embeds every image where the eval command embeds each crop once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from syncguide.metrics.base import MeanScore
from syncguide.models.clip_towers import CLIPTower


@torch.no_grad()
def clip_score(images: torch.Tensor, texts: Sequence[str], clip: CLIPTower) -> torch.Tensor:
    """CLIP scores ``(B,)`` of images ``(B, 3, H, W)`` in [0, 1] against their ``texts`` (one per image)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W); got {tuple(images.shape)}")
    if isinstance(texts, str) or len(texts) != images.shape[0]:
        raise ValueError(f"texts must be a list of one prompt per image ({images.shape[0]}); got {texts!r}")
    image_embeddings = F.normalize(clip.embed(images * 2 - 1).float(), dim=-1)
    text_embeddings = F.normalize(clip.embed_text(list(texts)).float(), dim=-1).to(image_embeddings.device)
    return (100 * (image_embeddings * text_embeddings).sum(-1)).clamp_min(0)


class MeanCLIPScore(MeanScore):
    """Mean-CLIP-S (higher is better): mean :func:`clip_score` over every (image, text) seen.

    ``update(images, texts)``: images ``(B, 3, H, W)`` in [0, 1], one text per image.
    """

    higher_is_better = True
    name = "Mean-CLIP-S"

    def __init__(self, clip: CLIPTower, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip = clip

    def update(self, images: torch.Tensor, texts: Sequence[str]) -> None:
        self._add(clip_score(images, texts, self.clip))
