"""Tiny, randomly initialised Stable Diffusion components built from config (no download).

Used by the tests, the benchmarks and the set-up script. Their images mean nothing; their shapes and code paths
are those of a real Stable Diffusion 1.x/2.x pipeline (VAE downsampling 8, 4 latent channels, CLIP text
encoder, cross-attention UNet, DDIM scheduler).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from syncguide.models.tokenizer import build_tokenizer

TINY_WORDS = "a photo of the mountains hills sea lake trees at sunset night day snow autumn summer".split()


def tiny_components(
    tokenizer_dir: str | Path,
    *,
    sample_size: int = 8,
    prediction_type: str = "epsilon",
    seed: int = 0,
    words: list[str] | None = None,
) -> dict[str, Any]:
    """Components of a tiny SD pipeline: ``vae, text_encoder, tokenizer, unet, scheduler`` (CPU, fp32, eval).

    Args:
        tokenizer_dir: where the tokenizer's vocab files are written.
        sample_size: the UNet's window in latent pixels (8 -> 64 px images).
        prediction_type: ``"epsilon"`` or ``"v_prediction"``.
        seed: seeds the random weights.
    """
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words or TINY_WORDS, tokenizer_dir, max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size * 8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    for module in (text_encoder, unet, vae):
        module.eval().requires_grad_(False)
    return {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer, "unet": unet, "scheduler": scheduler}


def save_tiny_pipeline(directory: str | Path, **kwargs: Any) -> Path:
    """Save a tiny random ``StableDiffusionPipeline`` in diffusers format (safetensors) to ``directory``."""
    directory = Path(directory)
    parts = tiny_components(directory / "tokenizer", **kwargs)
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
