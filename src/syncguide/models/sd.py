"""The Stable Diffusion 1.x/2.x backbone: CLIP prompt encoding, the UNet with CFG, the VAE (:mod:`.backbone`)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer

from syncguide.models.backbone import Conditioning, x0_from_output

EMBEDS = "prompt_embeds"


@dataclass
class StableDiffusionBackbone:
    """A Stable Diffusion 1.x/2.x model seen as a :class:`~syncguide.models.backbone.Backbone`.

    Conditioning rows: ``prompt_embeds`` ``(B, L, D)``, the text encoder's last hidden states. Window positions
    are not used (SD 1.x/2.x have no crop conditioning). ``decoder`` replaces the VAE's decoder in
    :meth:`decode` (e.g. diffusers' ``AutoencoderTiny``, TAESD, which decodes the same latent space): any module
    with ``decode(latents).sample`` and a ``config.scaling_factor``; the VAE still encodes.
    """

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    unet: UNet2DConditionModel
    decoder: torch.nn.Module | None = None

    @property
    def window(self) -> int:
        """The UNet's native size in latent pixels (64 for SD 2-base, 96 for SD 2 768-v)."""
        return int(self.unet.config.sample_size)

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """The UNet's input channels (4 for Stable Diffusion)."""
        return int(self.unet.config.in_channels)

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype, in which latents are kept."""
        return self.unet.dtype

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
    def encode_prompt(
        self,
        prompts: list[str] | None,
        negatives: list[str] | None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        """CLIP text embeddings ``(B, L, D)`` of B prompts, or the given ``prompt_embeds``; ``negatives`` (or
        ``negative_prompt_embeds``, same shape) enable CFG."""
        cond = self._encode(prompts) if prompt_embeds is None else prompt_embeds.to(self.unet.device, self.dtype)
        if negative_prompt_embeds is not None:
            uncond = negative_prompt_embeds.to(self.unet.device, self.dtype)
        else:
            uncond = None if negatives is None else self._encode(negatives)
        return Conditioning({EMBEDS: cond}, None if uncond is None else {EMBEDS: uncond})

    def _encode(self, texts: list[str]) -> torch.Tensor:
        warn_if_cut(self.tokenizer, texts)
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

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's output for ``x`` ``(n, 4, h, w)`` at timestep ``t``, with CFG when ``cond.uncond`` is set.

        ``cond`` has n rows; ``positions`` is ignored. Differentiable in ``x`` when called with grad enabled.
        """
        if cond.uncond is None:
            return self.unet(x, t, encoder_hidden_states=cond.cond[EMBEDS]).sample
        both = torch.cat([cond.uncond[EMBEDS], cond.cond[EMBEDS]])
        uncond, guided = self.unet(torch.cat([x, x]), t, encoder_hidden_states=both).sample.chunk(2)
        return uncond + guidance_scale * (guided - uncond)

    def x0(self, scheduler: SchedulerMixin, x: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The x0 prediction of ``x`` (epsilon, v or sample output; :func:`~.backbone.x0_from_output`)."""
        return x0_from_output(scheduler, x, output, t)

    def set_timesteps(self, scheduler: SchedulerMixin, steps: int, device: torch.device, window: int) -> None:
        """The scheduler's timesteps for ``steps`` steps, as diffusers' pipeline of this family sets them."""
        scheduler.set_timesteps(steps, device=device)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 4, h, w)`` (scaled as the UNet sees them) of images ``(B, 3, 8h, 8w)`` in [0, 1]; the
        mean of the VAE's posterior (deterministic)."""
        return vae_encode(self.vae, images)

    def decode(self, latents: torch.Tensor, wrap: int = 0) -> torch.Tensor:
        """Images in [0, 1], ``(B, 3, 8h, 8w)``, from latents ``(B, 4, h, w)``; differentiable (see
        :func:`vae_decode`)."""
        return vae_decode(self.decoder or self.vae, latents, wrap, self.vae_scale)


@torch.no_grad()
def vae_encode(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    """Latents as the denoiser sees them, ``(latents - shift_factor) * scaling_factor``, of images ``(B, 3, H, W)``
    in [0, 1]: the mean of the VAE's posterior (deterministic)."""
    latents = vae.encode((images * 2 - 1).to(vae.dtype)).latent_dist.mode()
    if getattr(vae.config, "shift_factor", None):
        latents = latents - vae.config.shift_factor
    return latents * vae.config.scaling_factor


def vae_decode(decoder: torch.nn.Module, latents: torch.Tensor, wrap: int, scale: int) -> torch.Tensor:
    """Images in [0, 1] ``(B, 3, scale*h, scale*w)`` from denoiser latents ``(B, C, h, w)``; differentiable.

    ``decoder`` is the VAE or any module with ``decode(latents).sample`` and a ``config.scaling_factor`` (e.g.
    diffusers' ``AutoencoderTiny``); its ``shift_factor`` (FLUX, SD3) is undone too. ``wrap`` > 0 decodes a
    360-degree panorama seamlessly: the last ``wrap`` latent columns are put on the left and the first ``wrap`` on
    the right, the whole is decoded, and the padding is cropped away.
    """
    if wrap:
        latents = torch.cat([latents[..., -wrap:], latents, latents[..., :wrap]], dim=-1)
    scaled = latents / decoder.config.scaling_factor
    if getattr(decoder.config, "shift_factor", None):
        scaled = scaled + decoder.config.shift_factor
    images = decoder.decode(scaled.to(decoder.dtype)).sample
    if wrap:
        pad = wrap * scale
        images = images[..., pad:-pad]
    return (images / 2 + 0.5).clamp(0, 1)


def warn_if_cut(tokenizer: CLIPTokenizer, texts: list[str]) -> None:
    """Warn (once per prompt) when a prompt has more tokens than the text encoder reads: the rest is cut."""
    limit = tokenizer.model_max_length
    for text in dict.fromkeys(texts):
        count = len(tokenizer(text, truncation=False).input_ids)
        if count > limit:
            warnings.warn(
                f"the prompt {text[:40]!r}... has {count} tokens; the text encoder reads the first {limit}",
                stacklevel=3,
            )
