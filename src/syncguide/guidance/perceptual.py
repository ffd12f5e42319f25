"""Perceptual distances for SyncDiffusion: callables ``(a, b) -> (B,)`` on image batches in [-1, 1]."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def lpips_vgg(device: torch.device | str = "cpu", pretrained_trunk: bool = True) -> torch.nn.Module:
    """LPIPS with the VGG16 trunk and v0.1 linear heads (the papers' perceptual loss), frozen, in eval mode.

    ``pretrained_trunk=False`` keeps the trunk random (seeded, so reproducible) and nothing is downloaded (tests
    only: scores then mean nothing). The trunk's ImageNet weights come through torchvision's download cache.
    """
    import lpips  # deferred: importing lpips is slow and only sync needs it

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's deprecated `pretrained=`
        torch.manual_seed(0)  # a random trunk is the same random trunk every time
        module = lpips.LPIPS(net="vgg", pnet_rand=not pretrained_trunk, verbose=False)
    return module.eval().requires_grad_(False).to(device)


def per_image(loss: PerceptualLoss, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``loss(a, b)`` as a ``(B,)`` vector of per-image distances, computed in float32.

    Accepts losses that return ``(B,)``, ``(B, 1)`` or ``(B, 1, 1, 1)`` (the lpips package's shape); raises
    ValueError for anything that is not one value per image.
    """
    out = loss(a.float(), b.float())
    if out.numel() != a.shape[0]:
        raise ValueError(
            f"perceptual_loss must return one distance per image ({a.shape[0]}); got shape {tuple(out.shape)}"
        )
    return out.reshape(a.shape[0])


class FeatureDistance(torch.nn.Module):
    """An LPIPS-style distance over a ViT image tower's hidden states (no learned heads).

    Per layer: unit-normalise each patch token's features, take the squared difference, average over tokens;
    then sum over layers. The demo world's SyncDiffusion loss uses the tiny CLIP's image tower this way (the
    real default stays LPIPS-VGG).

    Args:
        vision: a transformers CLIP vision tower (``CLIPVisionModel``, ``CLIPModel.vision_model``) taking
            ``pixel_values`` normalised to [-1, 1] (mean 0.5, std 0.5).
        image_size: its input size; other sizes are resized bilinearly.
    """

    def __init__(self, vision: torch.nn.Module, image_size: int) -> None:
        super().__init__()
        self.vision = vision.eval().requires_grad_(False)
        self.image_size = image_size

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances ``(B,)`` between image batches ``(B, 3, H, W)`` in [-1, 1]; 0 for identical images."""
        fa, fb = self._features(a), self._features(b)
        return sum(((x - y) ** 2).sum(-1).mean(-1) for x, y in zip(fa, fb, strict=True))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = torch.nn.functional.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        hidden = self.vision(pixel_values=x, output_hidden_states=True).hidden_states[1:]
        return [torch.nn.functional.normalize(h[:, 1:], dim=-1) for h in hidden]


def clip_feature_distance(clip_dir: str | Path, device: torch.device | str = "cpu") -> FeatureDistance:
    """:class:`FeatureDistance` over the image tower of the CLIP model saved in ``clip_dir`` (transformers format)."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(clip_dir)
    return FeatureDistance(clip.vision_model, clip.config.vision_config.image_size).to(device)
