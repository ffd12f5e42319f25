"""Perceptual distances for SyncDiffusion: callables ``(a, b) -> (B,)`` on image batches in [-1, 1]."""

from __future__ import annotations

import warnings
from collections.abc import Callable

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
