"""Thin adapter over Stable Diffusion components: prompt encoding, guided noise prediction, decoding."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer


@dataclass
class PromptEmbeds:
    """Text conditioning for a batch of B images: ``cond`` and (with CFG) ``uncond``, each ``(B, L, D)``."""

    cond: torch.Tensor
    uncond: torch.Tensor | None

    def repeat(self, n: int) -> PromptEmbeds:
        """The embeddings for ``n`` windows of each image, window-major: ``(n * B, L, D)``."""
        uncond = None if self.uncond is None else self.uncond.repeat(n, 1, 1)
        return PromptEmbeds(self.cond.repeat(n, 1, 1), uncond)

    def rows(self, index: slice) -> PromptEmbeds:
        """The embeddings of rows ``index``."""
        return PromptEmbeds(self.cond[index], None if self.uncond is None else self.uncond[index])


@dataclass
class LatentDiffusion:
    """A Stable Diffusion 1.x/2.x model seen as: encode prompts, predict noise with CFG, decode latents."""

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    unet: UNet2DConditionModel

    @property
    def window(self) -> int:
        """The UNet's native size in latent pixels (64 for SD 2-base, 96 for SD 2 768-v)."""
        return int(self.unet.config.sample_size)

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @contextmanager
    def gradient_checkpointing(self, enabled: bool) -> Iterator[None]:
        """Within the block, checkpoint the UNet's and VAE's blocks (less memory, one extra forward)."""
        modules = [self.unet, self.vae] if enabled else []
        before = [m.is_gradient_checkpointing for m in modules]
        for module in modules:
            module.enable_gradient_checkpointing()
        try:
            yield
        finally:
            for module, was in zip(modules, before, strict=True):
                if not was:
                    module.disable_gradient_checkpointing()

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], negative: list[str] | None) -> PromptEmbeds:
        """CLIP text embeddings ``(B, L, D)`` for B prompts; ``negative`` (same length) enables CFG."""
        cond = self._encode(prompts)
        return PromptEmbeds(cond, None if negative is None else self._encode(negative))

    def _encode(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = (ids != self.tokenizer.pad_token_id).long()
        return self.text_encoder(ids, attention_mask=mask)[0].to(self.unet.dtype)

    def predict(self, x: torch.Tensor, t: torch.Tensor, embeds: PromptEmbeds, guidance_scale: float) -> torch.Tensor:
        """The UNet's output for ``x`` ``(n, 4, h, w)`` at timestep ``t``, with CFG when ``embeds.uncond`` is set.

        ``embeds`` has n rows. Differentiable in ``x`` when called with grad enabled.
        """
        if embeds.uncond is None:
            return self.unet(x, t, encoder_hidden_states=embeds.cond).sample
        both = torch.cat([embeds.uncond, embeds.cond])
        uncond, cond = self.unet(torch.cat([x, x]), t, encoder_hidden_states=both).sample.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 4, h, w)`` (scaled as the UNet sees them) of images ``(B, 3, 8h, 8w)`` in [0, 1]; the
        mean of the VAE's posterior (deterministic)."""
        latents = self.vae.encode((images * 2 - 1).to(self.vae.dtype)).latent_dist.mode()
        if getattr(self.vae.config, "shift_factor", None):
            latents = latents - self.vae.config.shift_factor
        return latents * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor, wrap: int = 0) -> torch.Tensor:
        """Images in [0, 1], ``(B, 3, 8h, 8w)``, from latents ``(B, 4, h, w)``; differentiable.

        ``wrap`` > 0 decodes a 360-degree panorama seamlessly: the last ``wrap`` latent columns are put on the
        left and the first ``wrap`` on the right, the whole is decoded, and the padding is cropped away.
        """
        if wrap:
            latents = torch.cat([latents[..., -wrap:], latents, latents[..., :wrap]], dim=-1)
        scaled = latents / self.vae.config.scaling_factor
        if getattr(self.vae.config, "shift_factor", None):
            scaled = scaled + self.vae.config.shift_factor
        images = self.vae.decode(scaled.to(self.vae.dtype)).sample
        if wrap:
            pad = wrap * self.vae_scale
            images = images[..., pad:-pad]
        return (images / 2 + 0.5).clamp(0, 1)
