"""The demo world's metric networks (registered as ``demo``), read off the judge, the classifier nothing guides with.

The judge takes 64 x 64 images in [-1, 1]; other sizes are resized bilinearly. Its body is a stack of
conv-GroupNorm-SiLU blocks; the feature maps below are the blocks' SiLU outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from syncguide.demo.bundled import bundled
from syncguide.demo.judge import RESOLUTION, Judge, load_judge, to_resolution
from syncguide.demo.judging import coherence
from syncguide.metrics.networks import CropAgreement, MetricNetworks

STYLE_BLOCKS = 3
"""How many of the judge's first blocks give style feature maps (the shallow, texture-like ones, as VGG's
conv1_1 .. conv3_1)."""


def judge_maps(judge: Judge, images: torch.Tensor, blocks: int | None = None) -> list[torch.Tensor]:
    """The SiLU outputs ``(B, C, h, w)`` of the judge's first ``blocks`` blocks (all if None) for images
    ``(B, 3, H, W)`` in [-1, 1]."""
    maps: list[torch.Tensor] = []
    x = to_resolution(images)
    for layer in judge.body:
        x = layer(x)
        if isinstance(layer, nn.SiLU):
            maps.append(x)
            if blocks is not None and len(maps) == blocks:
                break
    return maps


class JudgeDistance(nn.Module):
    """An LPIPS-style distance over the judge's feature maps, without LPIPS's learned heads.

    Per block: unit-normalise the channel vector at each position, take the squared difference summed over
    channels, average over positions; then sum over blocks. Inputs ``(B, 3, H, W)`` in [-1, 1]; returns ``(B,)``,
    0 for identical images.
    """

    def __init__(self, judge: Judge) -> None:
        super().__init__()
        self.judge = judge.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        maps = zip(judge_maps(self.judge, a), judge_maps(self.judge, b), strict=True)
        return sum((F.normalize(x, dim=1) - F.normalize(y, dim=1)).square().sum(1).mean((1, 2)) for x, y in maps)


class JudgeStyle(nn.Module):
    """Style feature maps: the judge's first ``STYLE_BLOCKS`` block outputs ``(B, C, h, w)`` of images in [0, 1]."""

    def __init__(self, judge: Judge) -> None:
        super().__init__()
        self.judge = judge.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return judge_maps(self.judge, images * 2 - 1, STYLE_BLOCKS)


class JudgeFeatures(nn.Module):
    """The judge's pooled features ``(B, D)`` (D = 128 for the bundled judge) of images ``(B, 3, H, W)`` in [0, 1]."""

    def __init__(self, judge: Judge) -> None:
        super().__init__()
        self.judge = judge.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(to_resolution(images * 2 - 1))


def demo_networks(device: torch.device | str = "cpu") -> MetricNetworks:
    """The demo world's networks (offline): the bundled judge for distance, style, features and crop agreement;
    the demo CLIP.

    The judge is the attribute classifier nothing guides with; its distance is LPIPS-style without learned heads.
    """
    from syncguide.models.guidance_clip import load_clip

    judge = load_judge(bundled("judge")).to(device).requires_grad_(False)
    clip = load_clip("demo", device)
    names = {
        "lpips": "demo judge: LPIPS-style distance over its 7 block outputs (no learned heads)",
        "style": f"demo judge: feature maps of its first {STYLE_BLOCKS} blocks",
        "features": f"demo judge: pooled features ({judge.feature_dim}-d)",
        "clip": "demo CLIP (bundled tiny transformers CLIP)",
    }
    agreement = CropAgreement(
        RESOLUTION,
        lambda panoramas: coherence(judge, panoramas)["both"],
        "the demo judge: time and season agreement of crop pairs",
    )
    return MetricNetworks(JudgeDistance(judge), JudgeStyle(judge), JudgeFeatures(judge), clip, names, agreement)
