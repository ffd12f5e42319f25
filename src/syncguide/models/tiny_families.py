"""Tiny, randomly initialised SDXL, FLUX.1 (dev and schnell) and SD3 components built from config (no download).

The SD 1.x/2.x counterpart is :mod:`syncguide.models.tiny`. Images mean nothing; shapes, wiring and code paths are
those of each family's diffusers pipeline, shrunk as in diffusers' own ``get_dummy_components``:

- every family: a 4-channel latent, a VAE of 2 blocks (downsampling 2), a window of 8 latent pixels (16 px
  images), CLIP tokenizers of 16 tokens over :data:`~syncguide.models.tiny.TINY_WORDS` (local BPE files, see
  :func:`~syncguide.models.tokenizer.build_tokenizer`) and a T5 tokenizer (:func:`build_t5_tokenizer`, a Unigram
  model over the same words, 32 tokens by default);
- SDXL: CLIP-L-like encoder (hidden 16) + CLIP-G-like encoder with projection (hidden 32, projection 32), so the
  UNet's cross-attention takes 16 + 32 = 48 and its ``text_time`` embedding 6 * 8 + 32 = 80; Euler scheduler with
  SDXL-base's config;
- FLUX.1: ``FluxTransformer2DModel`` on 2x2-packed latents (16 channels in), CLIP pooled 32 and T5 ``d_model`` 32,
  guidance embedding for dev, none for schnell; flow-matching scheduler with dev's (dynamic shifting) or schnell's
  (no shift) config; VAE without quant convs, FLUX's scaling and shift factors;
- SD3: ``SD3Transformer2DModel`` (patch 2), two CLIP encoders with projection (hidden/projection 16 and 32: the
  hidden states concatenate to 48, zero-padded to T5's 64 = ``joint_attention_dim``; pooled 16 + 32 = 48), T5 or
  none; flow-matching scheduler with shift 3.0; VAE without quant convs, SD3's scaling and shift factors.

The component builders write their tokenizers into ``tokenizer_dir/tokenizer``, ``tokenizer_dir/tokenizer_2``
(and ``tokenizer_dir/tokenizer_3``), the folders ``save_pretrained`` uses, so ``tokenizer_dir`` may be the
directory the pipeline is saved in.
"""

from __future__ import annotations

import inspect
import string
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from syncguide.models.tiny import TINY_WORDS
from syncguide.models.tokenizer import build_tokenizer, check_tokenizer

CLIP_LENGTH = 16
"""Token length of the tiny CLIP tokenizers (and their encoders' position embeddings); real models: 77."""

T5_LENGTH = 32
"""``model_max_length`` of the tiny T5 tokenizer (T5 has relative positions: longer sequences still run)."""

T5_SPECIAL = ("<pad>", "</s>", "<unk>")
"""T5's special tokens in T5's order: ids 0, 1, 2."""

FLUX_DEV_SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
"""FLUX.1-dev's ``scheduler_config.json`` (resolution-dependent shift)."""

FLUX_SCHNELL_SCHEDULER = {**FLUX_DEV_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}
"""FLUX.1-schnell's ``scheduler_config.json`` (no shift)."""

SDXL_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "prediction_type": "epsilon",
}
"""stable-diffusion-xl-base-1.0's ``scheduler_config.json`` (EulerDiscreteScheduler)."""


def build_t5_tokenizer(words: list[str], directory: str | Path, max_length: int = T5_LENGTH) -> T5TokenizerFast:
    """A T5 tokenizer over ``words``, built locally from a ``tokenizers`` Unigram model, saved to ``directory``.

    The vocabulary has T5's layout: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then ``▁``, each word as one ``▁word``
    piece, and single ASCII letters, digits and punctuation, so other text still tokenizes (by characters) and only
    other characters become ``<unk>``. ``</s>`` ends every sequence, as T5's. No sentinel (``<extra_id_*>``) tokens.

    Raises RuntimeError if the tokenizer reloaded from ``directory`` has another size (the empty-tokenizer trap).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pieces = [(token, 0.0) for token in T5_SPECIAL] + [("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in dict.fromkeys(w.lower() for w in words)]
    pieces += [(char, -5.0) for char in string.ascii_letters + string.digits + string.punctuation]
    backend = Tokenizer(Unigram(pieces, unk_id=T5_SPECIAL.index("<unk>"), byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", T5_SPECIAL.index("</s>"))]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=max_length,
    )
    check_tokenizer(tokenizer, len(pieces))
    tokenizer.save_pretrained(directory)
    check_tokenizer(T5TokenizerFast.from_pretrained(directory), len(pieces))
    return tokenizer


def _clip_config(tokenizer: CLIPTokenizer, hidden: int, projection: int, act: str = "quick_gelu") -> CLIPTextConfig:
    """A 2-layer CLIP text config over ``tokenizer`` (2 layers: SDXL uses the penultimate hidden state)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=projection,
        num_attention_heads=hidden // 8,
        num_hidden_layers=2,
        hidden_act=act,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _t5(tokenizer: T5TokenizerFast, d_model: int) -> T5EncoderModel:
    """A 2-layer T5 v1.1-style encoder (gated GELU, untied head) of width ``d_model`` over ``tokenizer``."""
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=d_model // 8,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _vae(sample_size: int, scale: int = 2, **kwargs: Any) -> AutoencoderKL:
    """A VAE downsampling by ``scale`` (2: two blocks, 8 and 16 wide; 8: four blocks, 8 wide) with 4 latent
    channels for ``sample_size``-pixel images."""
    levels = int(scale).bit_length()
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16) if levels == 2 else (8,) * levels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size,
        **kwargs,
    )


def _finish(pipeline: type[DiffusionPipeline], parts: dict[str, Any]) -> dict[str, Any]:
    """Put every module of ``parts`` in eval mode without gradients, and drop the None parts ``pipeline`` does not
    take (``image_encoder``/``feature_extractor``, which older diffusers versions lack); return ``parts``."""
    accepted = inspect.signature(pipeline.__init__).parameters
    for part in parts.values():
        if isinstance(part, torch.nn.Module):
            part.eval().requires_grad_(False)
    return {name: part for name, part in parts.items() if part is not None or name in accepted}


def tiny_sdxl_components(
    tokenizer_dir: str | Path, *, sample_size: int = 8, seed: int = 0, words: list[str] | None = None
) -> dict[str, Any]:
    """Components of a tiny ``StableDiffusionXLPipeline`` (CPU, fp32, eval), keyed as its ``__init__`` takes them.

    Args:
        tokenizer_dir: the tokenizers are written to its ``tokenizer`` and ``tokenizer_2`` folders.
        sample_size: the UNet's window in latent pixels (8 -> 16 px images: the VAE downsamples 2).
        seed: seeds the random weights.
        words: the tokenizers' one-token words (default :data:`~syncguide.models.tiny.TINY_WORDS`).
    """
    tokenizer_dir = Path(tokenizer_dir)
    torch.manual_seed(seed)
    words = words or TINY_WORDS
    tokenizer = build_tokenizer(words, tokenizer_dir / "tokenizer", max_length=CLIP_LENGTH)
    tokenizer_2 = build_tokenizer(words, tokenizer_dir / "tokenizer_2", max_length=CLIP_LENGTH)
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden=16, projection=16))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2, hidden=32, projection=32, act="gelu"))
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=text_encoder.config.hidden_size + text_encoder_2.config.hidden_size,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # 6 micro-conditioning numbers (original size, crop top-left, target size) + the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_dim + text_encoder_2.config.projection_dim,
        norm_num_groups=8,
    )
    vae = _vae(2 * sample_size, scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(**SDXL_SCHEDULER)
    return _finish(
        StableDiffusionXLPipeline,
        {
            "vae": vae,
            "text_encoder": text_encoder,
            "text_encoder_2": text_encoder_2,
            "tokenizer": tokenizer,
            "tokenizer_2": tokenizer_2,
            "unet": unet,
            "scheduler": scheduler,
            "image_encoder": None,
            "feature_extractor": None,
        },
    )


def tiny_flux_components(
    tokenizer_dir: str | Path,
    *,
    guidance_embeds: bool = True,
    dynamic_shifting: bool | None = None,
    seed: int = 0,
    words: list[str] | None = None,
    vae_scale: int = 2,
) -> dict[str, Any]:
    """Components of a tiny ``FluxPipeline`` (CPU, fp32, eval), keyed as its ``__init__`` takes them.

    Args:
        tokenizer_dir: the CLIP tokenizer goes to its ``tokenizer`` folder, the T5 one to ``tokenizer_2``.
        guidance_embeds: True for a FLUX.1-dev-like (guidance-distilled) transformer, False for schnell-like.
        dynamic_shifting: the scheduler config: True FLUX.1-dev's (:data:`FLUX_DEV_SCHEDULER`), False schnell's
            (:data:`FLUX_SCHNELL_SCHEDULER`); default: as ``guidance_embeds``.
        seed: seeds the random weights.
        words: the tokenizers' one-token words (default :data:`~syncguide.models.tiny.TINY_WORDS`).
        vae_scale: the VAE's downsampling, 2 (default) or 8 (FLUX.1's own, which XLabs-style ControlNets' hint
            blocks assume).
    """
    tokenizer_dir = Path(tokenizer_dir)
    torch.manual_seed(seed)
    words = words or TINY_WORDS
    tokenizer = build_tokenizer(words, tokenizer_dir / "tokenizer", max_length=CLIP_LENGTH)
    tokenizer_2 = build_t5_tokenizer(words, tokenizer_dir / "tokenizer_2")
    text_encoder = CLIPTextModel(_clip_config(tokenizer, hidden=32, projection=32))
    text_encoder_2 = _t5(tokenizer_2, d_model=32)
    latent_channels = 4
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,  # latents are packed in 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_encoder_2.config.d_model,
        pooled_projection_dim=text_encoder.config.hidden_size,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim, as (16, 56, 56) to 128
    )
    flux_vae = {"scaling_factor": 0.3611, "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False}
    vae = _vae(16, vae_scale, **flux_vae)
    if dynamic_shifting is None:
        dynamic_shifting = guidance_embeds
    scheduler = FlowMatchEulerDiscreteScheduler(**(FLUX_DEV_SCHEDULER if dynamic_shifting else FLUX_SCHNELL_SCHEDULER))
    return _finish(
        FluxPipeline,
        {
            "scheduler": scheduler,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "text_encoder_2": text_encoder_2,
            "tokenizer_2": tokenizer_2,
            "transformer": transformer,
            "image_encoder": None,
            "feature_extractor": None,
        },
    )


def tiny_sd3_components(
    tokenizer_dir: str | Path,
    *,
    with_t5: bool = True,
    sample_size: int = 8,
    seed: int = 0,
    words: list[str] | None = None,
) -> dict[str, Any]:
    """Components of a tiny ``StableDiffusion3Pipeline`` (CPU, fp32, eval), keyed as its ``__init__`` takes them.

    Args:
        tokenizer_dir: the CLIP tokenizers go to its ``tokenizer`` and ``tokenizer_2`` folders, T5's to
            ``tokenizer_3``.
        with_t5: False leaves ``text_encoder_3`` and ``tokenizer_3`` None (SD3 without T5: zeros in its place).
            diffusers saves them as null but loads such a directory only with ``from_pretrained(directory,
            text_encoder_3=None, tokenizer_3=None)`` (they are not among SD3's ``_optional_components``).
        sample_size: the transformer's window in latent pixels (8 -> 16 px images: the VAE downsamples 2).
        seed: seeds the random weights.
        words: the tokenizers' one-token words (default :data:`~syncguide.models.tiny.TINY_WORDS`).
    """
    tokenizer_dir = Path(tokenizer_dir)
    torch.manual_seed(seed)
    words = words or TINY_WORDS
    tokenizer = build_tokenizer(words, tokenizer_dir / "tokenizer", max_length=CLIP_LENGTH)
    tokenizer_2 = build_tokenizer(words, tokenizer_dir / "tokenizer_2", max_length=CLIP_LENGTH)
    text_encoder = CLIPTextModelWithProjection(_clip_config(tokenizer, hidden=16, projection=16))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tokenizer_2, hidden=32, projection=32, act="gelu"))
    t5_width = 64  # > 16 + 32: the pipeline zero-pads the concatenated CLIP states to it, as 2048 to 4096
    tokenizer_3 = text_encoder_3 = None
    if with_t5:
        tokenizer_3 = build_t5_tokenizer(words, tokenizer_dir / "tokenizer_3")
        text_encoder_3 = _t5(tokenizer_3, d_model=t5_width)
    heads, head_dim = 4, 8
    transformer = SD3Transformer2DModel(
        sample_size=sample_size,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=t5_width,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=text_encoder.config.projection_dim + text_encoder_2.config.projection_dim,
    )
    vae = _vae(
        2 * sample_size, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return _finish(
        StableDiffusion3Pipeline,
        {
            "transformer": transformer,
            "scheduler": scheduler,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "text_encoder_2": text_encoder_2,
            "tokenizer_2": tokenizer_2,
            "text_encoder_3": text_encoder_3,
            "tokenizer_3": tokenizer_3,
            "image_encoder": None,
            "feature_extractor": None,
        },
    )


PIPELINES: dict[str, type[DiffusionPipeline]] = {
    "sdxl": StableDiffusionXLPipeline,
    "flux": FluxPipeline,
    "flux-schnell": FluxPipeline,
    "sd3": StableDiffusion3Pipeline,
}
"""Each tiny family's diffusers pipeline class (what :func:`save_tiny_family` saves and ``from_pretrained`` loads)."""


def tiny_family_components(family: str, tokenizer_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """The components of ``family`` (a key of :data:`PIPELINES`); ``kwargs`` go to the family's builder.

    Raises ValueError for an unknown family or ``guidance_embeds=True`` with ``"flux-schnell"``.
    """
    if family == "sdxl":
        return tiny_sdxl_components(tokenizer_dir, **kwargs)
    if family == "flux":
        return tiny_flux_components(tokenizer_dir, **kwargs)
    if family == "flux-schnell":
        if kwargs.pop("guidance_embeds", False):
            raise ValueError("flux-schnell has no guidance embedding; use family 'flux' for guidance_embeds=True")
        return tiny_flux_components(tokenizer_dir, guidance_embeds=False, **kwargs)
    if family == "sd3":
        return tiny_sd3_components(tokenizer_dir, **kwargs)
    raise ValueError(f"family must be one of {', '.join(PIPELINES)}; got {family!r}")


def save_tiny_family(family: str, directory: str | Path, **kwargs: Any) -> Path:
    """Save a tiny random pipeline of ``family`` (``"sdxl"``, ``"flux"``, ``"flux-schnell"``, ``"sd3"``) in
    diffusers format (safetensors) to ``directory`` and return it; ``kwargs`` go to the family's builder.

    ``PIPELINES[family].from_pretrained(directory)`` loads it back offline.
    """
    directory = Path(directory)
    parts = tiny_family_components(family, directory, **kwargs)
    PIPELINES[family](**parts).save_pretrained(directory, safe_serialization=True)
    return directory
