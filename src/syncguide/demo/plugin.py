"""The demo world as a plug-in: registers its bundled models, networks and data under the name ``demo``.

Found through the ``syncguide.plugins`` entry point (see :mod:`syncguide.registry`); the library core never
imports this package.
"""

from __future__ import annotations

import torch

from syncguide.registry import register


def register_demo() -> None:
    """Register every demo resource with :mod:`syncguide.registry`."""
    from syncguide.demo.bundled import bundled

    register("model", "demo", lambda: bundled("sd"))
    register("model", "demo-ddpm", lambda: bundled("ddpm"))
    register("model", "demo-tiny-decoder", lambda: bundled("tiny-decoder"))
    register("clip", "demo", _demo_clip)
    register("clip", "demo-noise-aware", _demo_noise_aware_clip)
    register("perceptual", "demo-clip", _demo_clip_distance)
    register("metric-networks", "demo", _demo_networks)
    register("dataset", "demo", _demo_crops)


def _demo_clip(device: torch.device | str) -> torch.nn.Module:
    from syncguide.demo.bundled import bundled
    from syncguide.models.clip_towers import load_transformers_clip

    return load_transformers_clip(bundled("clip"), device)


def _demo_noise_aware_clip(device: torch.device | str) -> torch.nn.Module:
    from syncguide.demo.bundled import bundled
    from syncguide.models.guidance_clip import load_noise_aware

    return load_noise_aware(bundled("clip-noise-aware"), device)


def _demo_clip_distance(device: torch.device | str) -> torch.nn.Module:
    from syncguide.demo.bundled import bundled
    from syncguide.guidance.perceptual import clip_feature_distance

    return clip_feature_distance(bundled("clip"), device)


def _demo_networks(device: torch.device | str):  # -> MetricNetworks (imported on use: the judge loads torch modules)
    from syncguide.demo.networks import demo_networks

    return demo_networks(device)


def _demo_crops(resolution: int, n: int, seed: int) -> torch.Tensor:
    from syncguide.demo.train.common import make_crops

    return make_crops(seed, n, size=resolution).images
