"""Training recipes of the demo world's bundled models (``syncguide demo train NAME``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# name -> module in syncguide.demo.train; each module has train(out, steps=..., seed=..., resume=..., ...),
# except the entries of FUNCTIONS.
RECIPES = {
    "judge": "attribute classifier (the judge of every evaluation)",
    "clip": "tiny CLIP, image and text towers, contrastive",
    "vae": "tiny AutoencoderKL (downsampling 4) for the demo Stable Diffusion",
    "vae-decoder": "fine-tune only the VAE's decoder (for PSNR); the latents, and so the demo SD, stay valid",
    "sd": "tiny Stable Diffusion: a UNet trained on the demo VAE's latents and the demo CLIP's frozen text tower",
    "ddpm": "tiny pixel-space unconditional DDPM (32 x 32)",
    "controlnet": "ControlNet for the demo SD reading edge maps of the world (white edges on black, as Canny)",
    "tiny-decoder": (
        "AutoencoderTiny decoder distilled from the demo VAE's decoder (fast sync mode's gradient-path decoder)"
    ),
}


FUNCTIONS = {"vae-decoder": ("vae", "finetune_decoder"), "tiny-decoder": ("tiny_decoder", "train")}


def recipe(name: str) -> Callable:
    """The ``train`` function of recipe ``name``."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {name!r}")
    module, function = FUNCTIONS.get(name, (name, "train"))
    return getattr(importlib.import_module(f"syncguide.demo.train.{module}"), function)
