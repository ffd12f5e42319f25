"""What kind of model a directory holds, read from its small config files before any weight loads.

A command that needs one kind of model (``generate``: an unconditional DDPM pipeline; ``panorama``: a Stable
Diffusion pipeline; ``finetune-clip --clip``: a CLIP) checks it first with :func:`expect_kind`, which raises a
:class:`~syncguide.errors.SettingError` saying what was expected and what was found, e.g. ``/m/sd is a diffusers
StableDiffusionPipeline; expected an unconditional DDPM pipeline (UNet2DModel + scheduler)``.

The kind comes from ``model_index.json`` (a diffusers pipeline: ``_class_name`` and its components),
``config.json`` (a transformers model: ``architectures`` / ``model_type``; a single diffusers model:
``_class_name``) or ``noise_aware.json`` (a noise-aware CLIP written by ``syncguide finetune-clip``). A directory of
the right kind must also hold each component's config and weight files.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncguide.errors import SettingError
from syncguide.models.families import FLUX, SD3, SDXL, family_of_index

__all__ = [
    "CLIP",
    "DESCRIPTIONS",
    "FLUX",
    "NOISE_AWARE_CLIP",
    "OTHER",
    "PANORAMA_KINDS",
    "SD3",
    "SDXL",
    "STABLE_DIFFUSION",
    "UNCONDITIONAL",
    "ModelFiles",
    "config_kind",
    "expect_kind",
    "index_kind",
    "inspect_model",
    "model_kind",
]

UNCONDITIONAL = "unconditional"
STABLE_DIFFUSION = "stable-diffusion"
CLIP = "clip"
NOISE_AWARE_CLIP = "noise-aware-clip"
OTHER = "other"

DESCRIPTIONS = {
    UNCONDITIONAL: "an unconditional DDPM pipeline (UNet2DModel + scheduler, as google/ddpm-ema-church-256)",
    STABLE_DIFFUSION: "a Stable Diffusion pipeline (UNet2DConditionModel + VAE + CLIP text encoder + tokenizer)",
    SDXL: "an SDXL pipeline (StableDiffusionXLPipeline)",
    FLUX: "a FLUX.1 pipeline (FluxPipeline)",
    SD3: "an SD3 pipeline (StableDiffusion3Pipeline)",
    CLIP: "a transformers CLIPModel directory (config.json with architectures CLIPModel)",
    NOISE_AWARE_CLIP: "a noise-aware CLIP written by syncguide finetune-clip (noise_aware.json)",
}
"""The kinds, as messages name what was expected."""

PANORAMA_KINDS = (STABLE_DIFFUSION, SDXL, FLUX, SD3)
"""The pipeline kinds a panorama runs on (the families of :mod:`syncguide.models.families`)."""

NOISE_AWARE_CONFIG = "noise_aware.json"
NOISE_AWARE_WEIGHTS = "noise_aware.safetensors"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
# The components each pipeline kind needs: the config file of each (and weights, for models).
PIPELINE_PARTS = {
    UNCONDITIONAL: {"unet": "config.json", "scheduler": "scheduler_config.json"},
    STABLE_DIFFUSION: {
        "unet": "config.json",
        "vae": "config.json",
        "text_encoder": "config.json",
        "scheduler": "scheduler_config.json",
    },
    SDXL: {
        "unet": "config.json",
        "vae": "config.json",
        "text_encoder": "config.json",
        "text_encoder_2": "config.json",
        "scheduler": "scheduler_config.json",
    },
    FLUX: {
        "transformer": "config.json",
        "vae": "config.json",
        "text_encoder": "config.json",
        "text_encoder_2": "config.json",
        "scheduler": "scheduler_config.json",
    },
    SD3: {
        "transformer": "config.json",
        "vae": "config.json",
        "text_encoder": "config.json",
        "text_encoder_2": "config.json",
        "scheduler": "scheduler_config.json",
    },
}
NO_WEIGHTS = ("scheduler", "tokenizer")


@dataclass(frozen=True)
class ModelFiles:
    """What a directory holds: ``kind`` (one of the kinds, or :data:`OTHER`), ``found`` (words for a message: ``a
    diffusers StableDiffusionPipeline``) and ``missing`` (a file the kind needs that is not there, or None)."""

    kind: str
    found: str
    missing: str | None = None


def index_kind(index: Any) -> tuple[str, str]:
    """``(kind, found)`` of a diffusers ``model_index.json`` already parsed (a dict)."""
    if not isinstance(index, dict):
        return OTHER, "a model_index.json that is not a JSON object"
    name = index.get("_class_name") or "pipeline"
    parts = {
        key: value[1]
        for key, value in index.items()
        if not key.startswith("_") and isinstance(value, list) and len(value) == 2 and value[1]
    }
    unet = parts.get("unet")
    found = f"a diffusers {name}" + (f" (unet {unet})" if unet else "")
    if unet == "UNet2DModel" and "scheduler" in parts and not {"vae", "vqvae", "text_encoder"} & parts.keys():
        return UNCONDITIONAL, found
    family = family_of_index(index)
    if family is not None and {"vae", "text_encoder", "tokenizer", "scheduler"} <= parts.keys():
        return family, found
    return OTHER, found


def config_kind(config: Any) -> tuple[str, str]:
    """``(kind, found)`` of a ``config.json`` already parsed: a transformers model or a single diffusers model."""
    if not isinstance(config, dict):
        return OTHER, "a config.json that is not a JSON object"
    architectures = config.get("architectures") or []
    if "CLIPModel" in architectures or (not architectures and config.get("model_type") == "clip"):
        return CLIP, "a transformers CLIPModel"
    if architectures:
        return OTHER, f"a transformers {architectures[0]}"
    if config.get("_class_name"):
        name = config["_class_name"]
        return OTHER, f"a single diffusers {name}, not a pipeline (its pipeline is the directory with model_index.json)"
    if config.get("model_type"):
        return OTHER, f"a transformers {config['model_type']} model"
    return OTHER, "a config.json of no known model"


def inspect_model(path: str | Path) -> ModelFiles:
    """What the existing ``path`` holds (see the module docstring); reads only its JSON config files."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return ModelFiles(OTHER, "a file, not a model directory")
    if (path / NOISE_AWARE_CONFIG).is_file():
        return _noise_aware(path)
    for name, classify in (("model_index.json", index_kind), ("config.json", config_kind)):
        if (path / name).is_file():
            try:
                data = json.loads((path / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                return ModelFiles(OTHER, f"a directory whose {name} is not valid JSON")
            kind, found = classify(data)
            return ModelFiles(kind, found, _missing(path, kind))
    return ModelFiles(OTHER, "a directory with no model files (no model_index.json, config.json or noise_aware.json)")


def model_kind(path: str | Path) -> str:
    """The kind of model the existing directory ``path`` holds: one of :data:`DESCRIPTIONS`' keys or :data:`OTHER`."""
    return inspect_model(path).kind


def expect_kind(path: str | Path, setting: str, allowed: Collection[str], needs: str | None = None) -> ModelFiles:
    """What ``path`` holds, if it is one of the ``allowed`` kinds with all its files; else SettingError naming
    ``setting``: ``PATH does not exist``, ``PATH is FOUND; NEEDS`` (``needs`` defaults to ``expected`` and the
    allowed kinds' descriptions) or ``PATH is FOUND but has no FILE``."""
    if not Path(path).expanduser().exists():
        raise SettingError(setting, f"{path} does not exist")
    files = inspect_model(path)
    if files.kind not in allowed:
        needs = needs or "expected " + " or ".join(DESCRIPTIONS[kind] for kind in allowed)
        raise SettingError(setting, f"{path} is {files.found}; {needs}")
    if files.missing:
        raise SettingError(setting, f"{path} is {files.found} but has no {files.missing}")
    return files


def _missing(path: Path, kind: str) -> str | None:
    """The first file that a ``kind`` directory needs and ``path`` lacks (None: all there)."""
    if kind == CLIP:
        return None if _has_weights(path) else "weights (model.safetensors or pytorch_model.bin)"
    for part, config in PIPELINE_PARTS.get(kind, {}).items():
        if not (path / part / config).is_file():
            return f"{part}/{config}"
        if part not in NO_WEIGHTS and not _has_weights(path / part):
            return f"weights in {part}/ (*.safetensors or *.bin)"
    if kind in PANORAMA_KINDS and not (path / "tokenizer").is_dir():
        return "tokenizer/"
    return None


def _has_weights(directory: Path) -> bool:
    return any(next(directory.glob(pattern), None) is not None for pattern in WEIGHT_PATTERNS)


def _noise_aware(path: Path) -> ModelFiles:
    found = "a noise-aware CLIP (syncguide finetune-clip)"
    try:
        config = json.loads((path / NOISE_AWARE_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ModelFiles(OTHER, f"a directory whose {NOISE_AWARE_CONFIG} is not valid JSON")
    if not isinstance(config, dict) or not isinstance(config.get("base"), str):
        return ModelFiles(OTHER, f"a directory whose {NOISE_AWARE_CONFIG} names no base CLIP")
    missing = None if (path / NOISE_AWARE_WEIGHTS).is_file() else NOISE_AWARE_WEIGHTS
    return ModelFiles(NOISE_AWARE_CLIP, found, missing)
