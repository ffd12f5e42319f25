"""Training recipes of the demo world's bundled models (``syncguide demo train NAME``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# name -> module in syncguide.demo.train; each module has train(out, steps=..., seed=..., resume=..., ...)
RECIPES = {
    "judge": "attribute classifier (the judge of every evaluation)",
    "clip": "tiny CLIP, image and text towers, contrastive",
    "vae": "tiny AutoencoderKL (downsampling 4) for the demo Stable Diffusion",
    "sd": "tiny Stable Diffusion: UNet and CLIP text encoder trained together on the demo VAE's latents",
    "ddpm": "tiny pixel-space unconditional DDPM (32 x 32)",
}


def recipe(name: str) -> Callable:
    """The ``train`` function of recipe ``name``."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {name!r}")
    return importlib.import_module(f"syncguide.demo.train.{name}").train
