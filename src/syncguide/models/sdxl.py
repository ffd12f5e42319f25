"""The SDXL backbone: two CLIP text encoders, pooled embeddings and size/crop micro-conditioning per window.

Prompts are encoded by diffusers' own ``StableDiffusionXLPipeline.encode_prompt`` (built on the same modules, no
copy), so the embeddings are exactly those of the family's pipeline: both encoders' penultimate hidden states
concatenated, ``(B, 77, 2048)``, and the second encoder's projected pooled output ``(B, 1280)``. An empty negative
prompt is diffusers' "no negative prompt": zeros where the checkpoint's ``force_zeros_for_empty_prompt`` says so.

Micro-conditioning (``add_time_ids`` = original size, crop top-left, target size, in pixels) per window, by
``micro_conditioning``:

- ``"window"`` (default): original size = the canvas, crop = the window's (top, left) on the canvas, target = the
  window. A window *is* a crop of the canvas at that offset, which is what SDXL's crop conditioning was trained on.
- ``"zeros"``: every window as a whole image: original = target = the window, crop (0, 0) (what calling the SDXL
  pipeline on each window alone would give).
- ``"canvas"``: original = target = the canvas, crop (0, 0) (what calling the SDXL pipeline at the canvas size
  would give).

On a canvas of exactly one window all three are diffusers' default conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from syncguide.errors import SettingError
from syncguide.models.backbone import Conditioning
from syncguide.models.latent import EMBEDS, pooled_rows, vae_decode
from syncguide.models.sd import StableDiffusionBackbone, warn_if_cut

POOLED = "text_embeds"


@dataclass
class StableDiffusionXLBackbone(StableDiffusionBackbone):
    """An SDXL model seen as a :class:`~syncguide.models.backbone.Backbone` (see the module docstring).

    Conditioning rows: ``prompt_embeds`` ``(B, 77, 2048)`` and ``text_embeds`` ``(B, 1280)``. ``canvas`` is the
    canvas' ``(height, width)`` in pixels for the micro-conditioning (None: each window's own size).
    """

    text_encoder_2: CLIPTextModelWithProjection | None = None
    tokenizer_2: CLIPTokenizer | None = None
    scheduler: SchedulerMixin | None = None
    force_zeros_for_empty_prompt: bool = True
    micro_conditioning: str = "window"
    canvas: tuple[int, int] | None = None

    def _reference(self) -> StableDiffusionXLPipeline:
        """diffusers' SDXL pipeline on these modules (no copy), for its prompt encoding."""
        return StableDiffusionXLPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            text_encoder_2=self.text_encoder_2,
            tokenizer=self.tokenizer,
            tokenizer_2=self.tokenizer_2,
            unet=self.unet,
            scheduler=self.scheduler,
            force_zeros_for_empty_prompt=self.force_zeros_for_empty_prompt,
            add_watermarker=False,
        )

    @torch.no_grad()
    def encode_prompt(
        self,
        prompts: list[str] | None,
        negatives: list[str] | None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        """Both encoders' embeddings of B prompts; ``negatives`` enable CFG (all empty: diffusers' zeros where the
        checkpoint forces them). Precomputed ``prompt_embeds`` need the pooled embeddings too: not taken here."""
        if prompt_embeds is not None or negative_prompt_embeds is not None:
            raise SettingError("prompt_embeds", "SDXL also needs pooled embeddings; pass the prompt text instead")
        for tokenizer in (self.tokenizer, self.tokenizer_2):
            warn_if_cut(tokenizer, prompts + (negatives or []))
        empty = negatives is not None and all(not text for text in negatives)
        encoded = self._reference().encode_prompt(
            prompt=prompts,
            device=self.unet.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=negatives is not None,
            negative_prompt=None if empty else negatives,
        )
        return pooled_rows(encoded, POOLED, self.dtype, negatives is not None)

    def time_ids(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """``(n, 6)`` micro-conditioning of window latents ``x`` ``(n, C, h, w)`` at ``positions`` ``(n, 2)``
        (pixels): original size, crop top-left, target size (see the module docstring)."""
        n, scale = x.shape[0], self.vae_scale
        window = (x.shape[-2] * scale, x.shape[-1] * scale)
        canvas = self.canvas or window
        corners = positions if positions is not None else torch.zeros(n, 2, dtype=torch.long)
        if self.micro_conditioning == "window":
            rows = [[*canvas, int(top), int(left), *window] for top, left in corners.tolist()]
        elif self.micro_conditioning == "zeros":
            rows = [[*window, 0, 0, *window]] * n
        elif self.micro_conditioning == "canvas":
            rows = [[*canvas, 0, 0, *canvas]] * n
        else:
            raise ValueError(f"micro_conditioning must be window, zeros or canvas; got {self.micro_conditioning!r}")
        return torch.tensor(rows, dtype=self.dtype, device=x.device)

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's output for ``x`` ``(n, 4, h, w)`` with CFG when ``cond.uncond`` is set (one batched call,
        uncond first, as diffusers' SDXL pipeline), with the ControlNet's residuals when it has one (its inputs
        as the UNet's, ``StableDiffusionXLControlNetPipeline``); differentiable in ``x`` when grad is enabled."""
        ids = self.time_ids(x, positions)
        if cond.uncond is None:
            added, embeds = {"text_embeds": cond.cond[POOLED], "time_ids": ids}, cond.cond[EMBEDS]
            extra = self._control(x, t, embeds, cond, 1, added)
            return self.unet(x, t, encoder_hidden_states=embeds, added_cond_kwargs=added, **extra).sample
        both = {k: torch.cat([cond.uncond[k], cond.cond[k]]) for k in (EMBEDS, POOLED)}
        added, x2 = {"text_embeds": both[POOLED], "time_ids": torch.cat([ids, ids])}, torch.cat([x, x])
        extra = self._control(x2, t, both[EMBEDS], cond, 2, added)
        out = self.unet(x2, t, encoder_hidden_states=both[EMBEDS], added_cond_kwargs=added, **extra).sample
        uncond, guided = out.chunk(2)
        return uncond + guidance_scale * (guided - uncond)

    def decode(self, latents: torch.Tensor, wrap: int = 0) -> torch.Tensor:
        """Images in [0, 1] from latents ``(B, 4, h, w)``; differentiable. A float16 VAE whose config says
        ``force_upcast`` (SDXL's does: it overflows in fp16) is moved to float32 first, as diffusers does, and
        stays there; the latents are cast to the decoder's dtype."""
        decoder = self.decoder or self.vae
        if decoder is self.vae and self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)
        mean = getattr(decoder.config, "latents_mean", None)
        std = getattr(decoder.config, "latents_std", None)
        if mean is not None and std is not None:  # SDXL VAEs that standardise their latents
            shape = (1, -1, 1, 1)
            mean = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(shape)
            std = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(shape)
            latents = latents * std + mean * decoder.config.scaling_factor
        return vae_decode(decoder, latents, wrap, self.vae_scale)
