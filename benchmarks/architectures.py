"""Published architectures as diffusers config keywords, for the benchmarks to build with random weights or on the
meta device (real FLOPs and memory without a download)."""

from __future__ import annotations

SD2_UNET = {
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}
"""Stable Diffusion 2-base's ``UNet2DConditionModel`` (865 M parameters)."""


def sd_vae(latent_channels: int = 4) -> dict:
    """The SD / SDXL / FLUX.1 ``AutoencoderKL`` layout (84 M parameters) with ``latent_channels`` (FLUX.1: 16)."""
    return {
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": latent_channels,
    }


FLUX_DEV = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
"""FLUX.1-dev's ``FluxTransformer2DModel`` (12 B parameters)."""
