"""Load the CLIP that computes semantic guidance, plain or noise-aware, from one string.

Specs:
- a name registered as kind ``clip`` in :mod:`syncguide.registry` (the demo plug-in registers ``demo``, the demo
  world's tiny CLIP, and ``demo-noise-aware``, its noise-aware fine-tune for the demo DDPM);
- a directory written by ``syncguide finetune-clip`` (has ``noise_aware.json``): that noise-aware encoder;
- a directory or hub id of a transformers ``CLIPModel`` (``openai/clip-vit-base-patch16``);
- ``open_clip:ARCH/PRETRAINED`` (``open_clip:RN50x16/openai``) or ``open_clip:hf-hub:ORG/NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from syncguide import registry
from syncguide.models.clip_towers import CLIPTower, load_open_clip, load_transformers_clip
from syncguide.models.noise_aware import NoiseAwareCLIP

CONFIG = "noise_aware.json"
WEIGHTS = "noise_aware.safetensors"


def load_clip(spec: str, device: torch.device | str = "cpu") -> CLIPTower | NoiseAwareCLIP:
    """The guidance encoder named by ``spec`` (see the module docstring), frozen, in eval mode, on ``device``."""
    if registry.registered("clip", spec):
        return registry.lookup("clip", spec)(device)
    if spec.startswith("open_clip:"):
        return load_open_clip(spec[len("open_clip:") :], device)
    path = Path(spec).expanduser()
    if (path / CONFIG).is_file():
        return load_noise_aware(path, device)
    return load_transformers_clip(str(path) if path.exists() else spec, device)


def load_base(spec: str, device: torch.device | str = "cpu") -> CLIPTower:
    """The plain tower of ``spec`` (a noise-aware spec is refused: fine-tune from the original encoder)."""
    tower = load_clip(spec, device)
    if isinstance(tower, NoiseAwareCLIP):
        raise ValueError(f"clip {spec} is already noise-aware; give the original CLIP it was fine-tuned from")
    return tower


def save_noise_aware(encoder: NoiseAwareCLIP, directory: str | Path, base: str, **info) -> Path:
    """Write the fine-tuned image tower and timestep MLP (safetensors) plus ``noise_aware.json`` naming ``base``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in encoder.trainable_state().items()}
    save_file(state, str(directory / WEIGHTS))
    config = {"base": base, "hidden": encoder.time_mlp[0].out_features, **info}
    (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def load_noise_aware(directory: str | Path, device: torch.device | str = "cpu") -> NoiseAwareCLIP:
    """A noise-aware encoder saved by :func:`save_noise_aware`: its base CLIP, then the fine-tuned weights."""
    directory = Path(directory)
    config = json.loads((directory / CONFIG).read_text())
    encoder = NoiseAwareCLIP(load_base(config["base"], device), hidden=config["hidden"])
    encoder.load_trainable_state(load_file(str(directory / WEIGHTS), device=str(torch.device(device))))
    return encoder.eval().requires_grad_(False)
