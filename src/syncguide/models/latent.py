"""What the latent-diffusion backbones share: the VAE side (scale, encode, decode), x0, gradient checkpointing, and
the conditioning rows of a family's ``encode_prompt`` output.

A backbone class mixes in :class:`LatentModel` and has ``vae``, ``decoder`` (None: the VAE decodes) and
``denoiser`` (its UNet or transformer); see :mod:`syncguide.models.backbone` for the protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.models.backbone import Conditioning, x0_from_output

EMBEDS = "prompt_embeds"


class LatentModel:
    """The VAE side and x0 of a latent-diffusion backbone (a mix-in; see the module docstring)."""

    vae: AutoencoderKL
    decoder: torch.nn.Module | None

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet or transformer."""
        raise NotImplementedError

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel (8 for every released family's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def dtype(self) -> torch.dtype:
        """The denoiser's dtype, in which latents are kept."""
        return self.denoiser.dtype

    def gradient_checkpointing(self, enabled: bool) -> AbstractContextManager[None]:
        """Within the block, checkpoint the denoiser's and VAE's blocks if ``enabled`` (less memory, one extra
        forward)."""
        return checkpointing([self.denoiser, self.vae], enabled)

    def x0(self, scheduler: SchedulerMixin, x: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The x0 prediction of ``x`` (epsilon, v, sample or flow-matching output;
        :func:`~syncguide.models.backbone.x0_from_output`); differentiable."""
        return x0_from_output(scheduler, x, output, t)

    def set_timesteps(self, scheduler: SchedulerMixin, steps: int, device: torch.device, window: int) -> None:
        """The scheduler's own timesteps for ``steps`` steps (FLUX and SD3 shift them: they override this)."""
        scheduler.set_timesteps(steps, device=device)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` as the denoiser sees them of images ``(B, 3, s*h, s*w)`` in [0, 1]."""
        return vae_encode(self.vae, images)

    def decode(self, latents: torch.Tensor, wrap: int = 0) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, s*h, s*w)`` from latents ``(B, C, h, w)``; differentiable (:func:`vae_decode`;
        ``decoder`` replaces the VAE's decoder when set)."""
        return vae_decode(self.decoder or self.vae, latents, wrap, self.vae_scale)


@contextmanager
def checkpointing(modules: list[torch.nn.Module], enabled: bool) -> Iterator[None]:
    """Within the block, gradient checkpointing of ``modules`` if ``enabled`` (restored after)."""
    modules = modules if enabled else []
    before = [m.is_gradient_checkpointing for m in modules]
    for module in modules:
        module.enable_gradient_checkpointing()
    try:
        yield
    finally:
        for module, was in zip(modules, before, strict=True):
            if not was:
                module.disable_gradient_checkpointing()


def pooled_rows(
    encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    pooled_name: str,
    dtype: torch.dtype,
    guided: bool,
) -> Conditioning:
    """The conditioning of a family's ``(embeds, negative, pooled, negative_pooled)`` encoding: rows
    ``prompt_embeds`` and ``pooled_name``, uncond only if ``guided``."""
    embeds, negative, pooled, negative_pooled = encoded
    cond = {EMBEDS: embeds.to(dtype), pooled_name: pooled.to(dtype)}
    uncond = {EMBEDS: negative.to(dtype), pooled_name: negative_pooled.to(dtype)} if guided else None
    return Conditioning(cond, uncond)


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
