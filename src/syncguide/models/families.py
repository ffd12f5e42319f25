"""The model families a panorama runs on, how a checkpoint's family is read, and each family's defaults.

A diffusers checkpoint says what it is in ``model_index.json``: its ``_class_name`` (``StableDiffusionXLPipeline``)
and its components (``"transformer": ["diffusers", "FluxTransformer2DModel"]``). :func:`family_of_index` reads
the family from either; :data:`DEFAULTS` is the one table of per-family defaults (the README repeats it), each value
with its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SD = "stable-diffusion"
SDXL = "sdxl"
FLUX = "flux"
SD3 = "sd3"
FAMILIES = (SD, SDXL, FLUX, SD3)
FLOW = (FLUX, SD3)
"""The flow-matching families (a FlowMatchEulerDiscreteScheduler, a transformer denoiser)."""

NAMES = {SD: "Stable Diffusion 1.x/2.x", SDXL: "SDXL", FLUX: "FLUX.1", SD3: "SD3 / SD3.5"}
"""How messages name each family."""

CLASS_NAMES = {
    "StableDiffusionPipeline": SD,
    "StableDiffusionXLPipeline": SDXL,
    "FluxPipeline": FLUX,
    "StableDiffusion3Pipeline": SD3,
    # what syncguide's own pipelines write with save_pretrained
    "SyncDiffusionPipeline": SD,
    "SyncDiffusionXLPipeline": SDXL,
    "SyncFluxPipeline": FLUX,
    "SyncSD3Pipeline": SD3,
}
"""``_class_name`` -> family, for the pipelines whose checkpoints a panorama loads."""

SUPPORTED = "StableDiffusionPipeline (SD 1.x/2.x), StableDiffusionXLPipeline, FluxPipeline, StableDiffusion3Pipeline"
"""The supported list, as errors state it."""


def family_of_index(index: dict[str, Any]) -> str | None:
    """The family of a parsed ``model_index.json``, from its components (what loads) or else its class name;
    None for anything else (Kandinsky, an unconditional UNet2DModel pipeline, ...)."""
    parts = {
        key: value[1]
        for key, value in index.items()
        if not key.startswith("_") and isinstance(value, list) and len(value) == 2 and value[1]
    }
    denoiser = parts.get("transformer") or parts.get("unet")
    by_parts = {
        "UNet2DConditionModel": SDXL if "text_encoder_2" in parts else SD,
        "FluxTransformer2DModel": FLUX,
        "SD3Transformer2DModel": SD3,
    }.get(denoiser or "")
    if by_parts == SD and not {"vae", "text_encoder", "tokenizer"} <= parts.keys():
        by_parts = None
    return by_parts or (CLASS_NAMES.get(index.get("_class_name", "")) if denoiser else None)


@dataclass(frozen=True)
class Defaults:
    """A family's defaults for a panorama; ``sources`` says where each value comes from."""

    steps: int
    guidance_scale: float
    window_px: int
    stride_fraction: int  # the stride is window // stride_fraction latent pixels
    sync_weight: float
    dtype: str  # on a GPU; CPU runs use float32
    max_sequence_length: int | None
    sources: dict[str, str]


DEFAULTS: dict[str, Defaults] = {
    SD: Defaults(
        50,
        7.5,
        512,
        4,
        20.0,
        "float16",
        None,
        {
            "steps": "the SyncDiffusion paper (DDIM 50)",
            "guidance_scale": "the paper and diffusers' StableDiffusionPipeline",
            "window_px": "the UNet's sample_size (512 px SD 2-base, 768 px SD 2 768-v)",
            "stride": "the paper: 16 latent px = window / 4",
            "sync_weight": "the paper (w0 = 20, decay 0.95), with LPIPS-VGG",
            "dtype": "diffusers' usual fp16 for SD",
        },
    ),
    SDXL: Defaults(
        50,
        5.0,
        1024,
        4,
        20.0,
        "float16",
        None,
        {
            "steps": "diffusers' StableDiffusionXLPipeline (50)",
            "guidance_scale": "diffusers' StableDiffusionXLPipeline (5.0)",
            "window_px": "the UNet's sample_size (128 latent px = 1024 px)",
            "stride": "carried over from the paper's ratio (window / 4 = 32 latent px)",
            "sync_weight": "carried over from the paper's SD 2 value, not measured on SDXL",
            "dtype": "diffusers' fp16 (the VAE is upcast to fp32 where its config says force_upcast)",
        },
    ),
    FLUX: Defaults(
        28,
        3.5,
        1024,
        4,
        20.0,
        "bfloat16",
        512,
        {
            "steps": "diffusers' FluxPipeline (28; schnell checkpoints, without a guidance embedding: 4)",
            "guidance_scale": "diffusers' FluxPipeline: the distilled guidance embedding 3.5 (schnell: none, 0)",
            "window_px": "diffusers' FluxPipeline default_sample_size (128 latent px = 1024 px)",
            "stride": "carried over from the paper's ratio (window / 4)",
            "sync_weight": "carried over from the paper's SD 2 value, not measured on FLUX",
            "dtype": "Black Forest Labs' and diffusers' bfloat16",
            "max_sequence_length": "diffusers' FluxPipeline (512; schnell: 256, its model card's)",
        },
    ),
    SD3: Defaults(
        28,
        7.0,
        1024,
        4,
        20.0,
        "float16",
        256,
        {
            "steps": "diffusers' StableDiffusion3Pipeline (28)",
            "guidance_scale": "diffusers' StableDiffusion3Pipeline (7.0)",
            "window_px": "the transformer's sample_size (128 latent px = 1024 px)",
            "stride": "carried over from the paper's ratio (window / 4)",
            "sync_weight": "carried over from the paper's SD 2 value, not measured on SD3",
            "dtype": "diffusers' fp16 for SD3",
            "max_sequence_length": "diffusers' StableDiffusion3Pipeline (256)",
        },
    ),
}

SCHNELL = Defaults(4, 0.0, 1024, 4, 20.0, "bfloat16", 256, DEFAULTS[FLUX].sources)
"""FLUX.1-schnell (no guidance embedding): 4 steps, no guidance, 256 T5 tokens (its model card's settings)."""


def defaults_for(family: str, guidance_embeds: bool = True) -> Defaults:
    """The defaults of ``family``; a FLUX transformer without a guidance embedding is schnell-like."""
    return SCHNELL if family == FLUX and not guidance_embeds else DEFAULTS[family]
