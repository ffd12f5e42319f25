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
from syncguide.errors import SettingError
from syncguide.hub import HUB_ID, check_hub, expect_cached
from syncguide.modelkind import (
    CLIP,
    DESCRIPTIONS,
    NOISE_AWARE_CLIP,
    NOISE_AWARE_CONFIG,
    NOISE_AWARE_WEIGHTS,
    expect_kind,
)
from syncguide.models.clip_towers import CLIPTower, load_open_clip, load_transformers_clip
from syncguide.models.noise_aware import NoiseAwareCLIP

CONFIG = NOISE_AWARE_CONFIG
WEIGHTS = NOISE_AWARE_WEIGHTS
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""The weight files open_clip fetches from a hub repo (the safetensors first)."""
SPECS = "a registered name ({names}), a CLIP directory, a hub id org/name or open_clip:ARCH/TAG"


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


def check_clip(spec: str, setting: str = "clip", noise_aware: bool = True) -> None:
    """SettingError (naming ``setting``) unless ``spec`` names a CLIP that :func:`load_clip` can load, checked from
    its files before any weight loads: a registered name; ``open_clip:`` with an architecture and pretrained tag
    open_clip knows; a transformers CLIPModel directory or (``noise_aware``) a noise-aware one, whose base CLIP is
    checked too; a hub id in the Hugging Face cache (of a CLIP) or downloadable (not offline, the hub reachable).
    """
    if registry.registered("clip", spec):
        return
    if spec.startswith("open_clip:"):
        _check_open_clip(spec, setting)
        return
    path = Path(spec).expanduser()
    if path.exists():
        allowed = (CLIP, NOISE_AWARE_CLIP) if noise_aware else (CLIP,)
        plain = f"expected {DESCRIPTIONS[CLIP]}: fine-tuning starts from a plain CLIP (a noise-aware one's base)"
        files = expect_kind(path, setting, allowed, None if noise_aware else plain)
        if files.kind == NOISE_AWARE_CLIP:
            base = json.loads((path / CONFIG).read_text(encoding="utf-8"))["base"]
            try:
                check_clip(base, setting, noise_aware=False)
            except SettingError as error:
                rule = f"{spec} is a noise-aware CLIP whose base CLIP fails: {error.rule}"
                raise SettingError(setting, rule) from None
        return
    if not HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise SettingError(setting, f"{spec} does not exist (give {SPECS.format(names=_names())})")
    cached = check_hub(spec, setting, "config.json")
    if cached is not None:
        expect_cached(spec, cached, setting, (CLIP,))


def _names() -> str:
    return ", ".join(registry.names("clip")) or "none"


def _check_open_clip(spec: str, setting: str) -> None:
    """SettingError unless open_clip knows the architecture and pretrained tag of ``open_clip:ARCH/TAG`` (a tag may
    also be a checkpoint file); ``open_clip:hf-hub:ORG/NAME`` goes through the hub check."""
    import open_clip

    name = spec[len("open_clip:") :]
    if name.startswith("hf-hub:"):
        check_hub(name[len("hf-hub:") :], setting, ("open_clip_config.json", *OPEN_CLIP_WEIGHTS))
        return
    arch, _, tag = name.partition("/")
    if arch not in open_clip.list_models():
        raise SettingError(setting, f"{spec}: open_clip has no architecture {arch!r} (e.g. open_clip:RN50x16/openai)")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tag or Path(tag).expanduser().is_file():
        return  # random weights, or a checkpoint file
    if tag not in tags:
        known = ", ".join(tags) or "none"
        raise SettingError(setting, f"{spec}: open_clip {arch} has no pretrained weights {tag!r} (known: {known})")
    repo = open_clip.get_pretrained_cfg(arch, tag).get("hf_hub", "").strip("/")
    if repo.count("/") == 1:  # weights from the hub (else from a URL, into torch's cache)
        try:
            check_hub(repo, setting, OPEN_CLIP_WEIGHTS)
        except SettingError as error:
            raise SettingError(setting, f"{spec} fetches its weights from the hub: {error.rule}") from None


def load_base(spec: str, device: torch.device | str = "cpu") -> CLIPTower:
    """The plain tower of ``spec`` (a noise-aware spec is refused, SettingError ``clip``: fine-tune from the
    original encoder)."""
    tower = load_clip(spec, device)
    if isinstance(tower, NoiseAwareCLIP):
        raise SettingError("clip", f"{spec} is already noise-aware; give the original CLIP it was fine-tuned from")
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
