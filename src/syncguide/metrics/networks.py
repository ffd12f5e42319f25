"""The feature networks behind the metrics, pluggable: the papers' real ones, or a set a plug-in registers.

A report must say which networks produced each number: :attr:`MetricNetworks.names` describes each. Sets other
than ``real`` are registered with :mod:`syncguide.registry` (kind ``metric-networks``): the demo world registers
``demo`` (its judge and CLIP, :mod:`syncguide.demo.networks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from syncguide import registry
from syncguide.metrics.base import Distance, Features, StyleFeatures
from syncguide.metrics.reference_networks import load_inception, load_lpips, load_vgg19_style, loading
from syncguide.models.clip_towers import CLIPTower

ROLES = ("lpips", "style", "features", "clip")
REAL = "real"
"""The name of the papers' networks (:func:`real_networks`); every other name is looked up in the registry."""


@dataclass(frozen=True)
class CropAgreement:
    """A classifier's crop-pair agreement: ``agreement(panoramas)`` maps panoramas ``(B, 3, crop, W)`` in [0, 1]
    to the share ``(B,)`` of crop pairs it gives the same labels; ``description`` says what it reads, for reports.
    """

    crop: int
    agreement: Callable[[torch.Tensor], torch.Tensor]
    description: str


@dataclass
class MetricNetworks:
    """The networks the metrics run on.

    Attributes:
        distance: perceptual distance on images in [-1, 1] -> ``(B,)`` or ``(B, 1, 1, 1)`` (Intra-LPIPS, diversity).
        style: images in [0, 1] -> list of feature maps ``(B, C, h, w)`` (Intra-Style-L).
        features: images in [0, 1] -> ``(B, D)`` (FID, KID, GIQA; Inception pool3, D = 2048, for real numbers).
        clip: a CLIP tower (Mean-CLIP-S).
        names: for each of ``"lpips"``, ``"style"``, ``"features"``, ``"clip"``, a description for reports.
        judge: optional crop agreement of an attribute classifier (the ``judge`` metric; the demo world's).
    """

    distance: Distance
    style: StyleFeatures
    features: Features
    clip: CLIPTower
    names: dict[str, str]
    judge: CropAgreement | None = None

    def __post_init__(self) -> None:
        missing = [role for role in ROLES if role not in self.names]
        if missing:
            raise ValueError(f"names must describe every network ({', '.join(ROLES)}); missing {', '.join(missing)}")


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


def load_networks(name: str, device: torch.device | str = "cpu", **real_options: Path | str | None) -> MetricNetworks:
    """The metric networks called ``name``: ``real`` (:func:`real_networks` with ``real_options``) or a set
    registered with :mod:`syncguide.registry` (ValueError listing the registered ones for an unknown name)."""
    if name == REAL:
        return real_networks(device, **real_options)  # type: ignore[arg-type]
    return registry.lookup("metric-networks", name)(device)


def network_names() -> tuple[str, ...]:
    """Every name :func:`load_networks` accepts: ``real`` and the registered sets."""
    return (REAL, *registry.names("metric-networks"))
