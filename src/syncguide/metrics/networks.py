"""The feature networks behind the metrics, pluggable: the papers' real ones, or the demo world's bundled ones.

A report must say which networks produced each number: :attr:`MetricNetworks.names` describes each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from syncguide.metrics.base import Distance, Features, StyleFeatures
from syncguide.metrics.reference_networks import load_inception, load_lpips, load_vgg19_style, loading
from syncguide.models.clip_towers import CLIPTower

ROLES = ("lpips", "style", "features", "clip")


@dataclass
class MetricNetworks:
    """The networks the metrics run on.

    Attributes:
        distance: perceptual distance on images in [-1, 1] -> ``(B,)`` or ``(B, 1, 1, 1)`` (Intra-LPIPS, diversity).
        style: images in [0, 1] -> list of feature maps ``(B, C, h, w)`` (Intra-Style-L).
        features: images in [0, 1] -> ``(B, D)`` (FID, KID, GIQA; Inception pool3, D = 2048, for real numbers).
        clip: a CLIP tower (Mean-CLIP-S).
        names: for each of ``"lpips"``, ``"style"``, ``"features"``, ``"clip"``, a description for reports.
    """

    distance: Distance
    style: StyleFeatures
    features: Features
    clip: CLIPTower
    names: dict[str, str]

    def __post_init__(self) -> None:
        missing = [role for role in ROLES if role not in self.names]
        if missing:
            raise ValueError(f"names must describe every network ({', '.join(ROLES)}); missing {', '.join(missing)}")


def demo_networks(device: torch.device | str = "cpu") -> MetricNetworks:
    """The demo world's networks (offline): the bundled judge for distance, style and features; the demo CLIP.

    The judge is the attribute classifier nothing guides with; its distance is LPIPS-style without learned heads.
    """
    from syncguide.demo.bundled import bundled
    from syncguide.demo.train.judge import load_judge
    from syncguide.metrics.judge_networks import STYLE_BLOCKS, JudgeDistance, JudgeFeatures, JudgeStyle
    from syncguide.models.guidance_clip import load_clip

    judge = load_judge(bundled("judge")).to(device).requires_grad_(False)
    clip = load_clip("demo", device)
    names = {
        "lpips": "demo judge: LPIPS-style distance over its 7 block outputs (no learned heads)",
        "style": f"demo judge: feature maps of its first {STYLE_BLOCKS} blocks",
        "features": f"demo judge: pooled features ({judge.feature_dim}-d)",
        "clip": "demo CLIP (bundled tiny transformers CLIP)",
    }
    return MetricNetworks(JudgeDistance(judge), JudgeStyle(judge), JudgeFeatures(judge), clip, names)


def real_networks(
    device: torch.device | str = "cpu",
    lpips_weights: str | Path | None = None,
    vgg19_weights: str | Path | None = None,
    inception_weights: str | Path | None = None,
    clip: str = "openai/clip-vit-base-patch16",
) -> MetricNetworks:
    """The papers' networks: LPIPS-VGG v0.1, VGG19 (ImageNet), Inception-v3 pool3 (torchmetrics FID), CLIP.

    Each ``*_weights`` is a local file (torchvision VGG16 / VGG19 state dicts, torch-fidelity's Inception weights);
    None downloads. ``clip`` is any :func:`syncguide.models.guidance_clip.load_clip` spec (a hub id or a local
    directory). A network that cannot be loaded raises one UsageError naming its argument.
    """
    from syncguide.models.guidance_clip import load_clip

    distance = load_lpips(lpips_weights, device)
    style = load_vgg19_style(vgg19_weights, device)
    features = load_inception(inception_weights, device)
    with loading(f"the CLIP {clip!r}", "clip (a local directory)"):
        tower = load_clip(clip, device)
    names = {
        "lpips": "LPIPS-VGG v0.1 (lpips package, torchvision ImageNet VGG16 trunk)",
        "style": "VGG19 (torchvision IMAGENET1K_V1) conv1_1, conv1_2, conv2_1, conv2_2, conv3_1",
        "features": "Inception-v3 pool3 2048-d (torch-fidelity inception-v3-compat, as torchmetrics FID)",
        "clip": f"CLIP {clip}",
    }
    return MetricNetworks(distance, style, features, tower, names)
