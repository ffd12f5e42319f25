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


def save_tiny_ddpm(directory: str | Path, sample_size: int = 16, seed: int = 0) -> Path:
    """Save a tiny random unconditional ``UNet2DModel`` + ``DDPMScheduler`` (google/ddpm-ema-* layout)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(directory, safe_serialization=True)
    return Path(directory)


def save_tiny_clip(directory: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """Save a tiny random transformers ``CLIPModel`` with a local-vocab tokenizer and its image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    directory = Path(directory)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(TINY_WORDS, directory, max_length=16)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    text = {"vocab_size": len(tokenizer), "max_position_embeddings": 16, "pad_token_id": tokenizer.pad_token_id}
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    vision = {**small, "num_hidden_layers": 4, "image_size": image_size, "patch_size": 8}
    config = CLIPConfig(text_config={**small, **text, **ids}, vision_config=vision, projection_dim=24)
    CLIPModel(config).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    processor = CLIPImageProcessor(size=image_size, crop_size=image_size)  # OpenAI CLIP mean and std
    processor.save_pretrained(directory)
    return directory


def tiny_open_clip(kind: str = "resnet", image_size: int = 32, seed: int = 0):
    """A tiny random open_clip model as a :class:`~syncguide.models.clip_towers.OpenCLIP` tower.

    ``kind``: ``"resnet"`` (ModifiedResNet, BatchNorm) or ``"vit"``. Uses open_clip's bundled BPE tokenizer.
    """
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from syncguide.models.clip_towers import OpenCLIP

    torch.manual_seed(seed)  # tests build it repeatedly and expect the same weights
    if kind == "resnet":
        vision = CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, head_width=8, image_size=image_size)
    elif kind == "vit":
        vision = CLIPVisionCfg(layers=4, width=32, head_width=16, patch_size=8, image_size=image_size)
    else:
        raise ValueError(f"kind must be resnet or vit, got {kind!r}")
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=16, heads=2, layers=1)
    model = CLIP(embed_dim=24, vision_cfg=vision, text_cfg=text).eval().requires_grad_(False)
    _measure_batchnorm(model.visual, image_size, seed)
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    return OpenCLIP(model, open_clip.get_tokenizer("RN50"), mean, std)


def _measure_batchnorm(visual: torch.nn.Module, image_size: int, seed: int) -> None:
    """Set BatchNorm statistics from random images: with the default ones a random ResNet tower maps every image
    to the same embedding (cosine 1.0), which no guidance or fine-tuning test can use."""
    norms = [m for m in visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the one batch
        norm.train()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        visual(torch.randn(64, 3, image_size, image_size, generator=generator))
    for norm in norms:
        norm.eval()


def random_controlnet(unet: Any, vae_scale: int, seed: int = 0, std: float = 0.2) -> Any:
    """A random diffusers ``ControlNetModel`` for ``unet`` (copied from it, as ``ControlNetModel.from_unet``) whose
    conditioning embedding downsamples by ``vae_scale``. Its zero convolutions get N(0, ``std``) weights: with
    diffusers' zero initialisation every residual would be 0 and a test could not tell it was used."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    levels = int(vae_scale).bit_length()  # 8 -> 4 levels (3 downsamplings), 4 -> 3
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4,) * (levels - 1) + (8,))
    with torch.no_grad():
        for module in (*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out):
            for p in module.parameters():
                p.normal_(0, std)
    return net.eval()


def random_flux_controlnet(
    transformer: Any, seed: int = 0, std: float = 0.2, layers: int = 1, xlabs: bool = False
) -> Any:
    """A random ``FluxControlNetModel`` for a FLUX ``transformer`` with ``layers`` double and single blocks.

    InstantX-style (``from_transformer``: the embedders and first blocks copied), or ``xlabs``: XLabs-style, its
    own hint block reading pixels (downsampling 8 then packing 2x2: for a VAE of scale 8), random. The
    zero-initialised outputs (block outputs, InstantX's control embedder, XLabs' hint output) get N(0, ``std``)
    weights, so its residuals are not 0."""
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    config = transformer.config
    shape = {
        "num_layers": layers,
        "num_single_layers": layers,
        "attention_head_dim": config.attention_head_dim,
        "num_attention_heads": config.num_attention_heads,
    }
    if xlabs:
        widths = {k: config[k] for k in ("in_channels", "joint_attention_dim", "pooled_projection_dim")}
        net = FluxControlNetModel(
            patch_size=2,
            guidance_embeds=config.guidance_embeds,
            axes_dims_rope=config.axes_dims_rope,
            conditioning_embedding_channels=config.in_channels // 4,
            **widths,
            **shape,
        )
        zero = [net.input_hint_block.conv_out]
    else:
        net = FluxControlNetModel.from_transformer(transformer, **shape)
        zero = [net.controlnet_x_embedder]
    with torch.no_grad():
        for module in (*net.controlnet_blocks, *net.controlnet_single_blocks, *zero):
            for p in module.parameters():
                p.normal_(0, std)
    return net.eval()


def save_tiny_controlnet(model_dir: str | Path, directory: str | Path, seed: int = 0, std: float = 0.2) -> Path:
    """A random ControlNet for the pipeline in ``model_dir`` (:func:`random_controlnet` for SD 1.x/2.x and SDXL,
    :func:`random_flux_controlnet` for FLUX.1), saved in diffusers format (safetensors)."""
    model_dir = Path(model_dir)
    if (model_dir / "transformer").is_dir():
        from diffusers import FluxTransformer2DModel

        net = random_flux_controlnet(FluxTransformer2DModel.from_pretrained(model_dir / "transformer"), seed, std)
    else:
        unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
        vae = AutoencoderKL.from_pretrained(model_dir / "vae")
        net = random_controlnet(unet, 2 ** (len(vae.config.block_out_channels) - 1), seed, std)
    net.save_pretrained(directory)
    return Path(directory)
