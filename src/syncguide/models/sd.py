"""The Stable Diffusion 1.x/2.x backbone: CLIP prompt encoding, the UNet with CFG, the VAE (:mod:`.backbone`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from syncguide.control import CONTROL, Control
from syncguide.models.backbone import Conditioning
from syncguide.models.latent import EMBEDS, LatentModel, vae_decode, vae_encode

__all__ = ["EMBEDS", "StableDiffusionBackbone", "control_rows", "vae_decode", "vae_encode", "warn_if_cut"]


@dataclass
class StableDiffusionBackbone(LatentModel):
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
    control: Control | None = None

    @property
    def window(self) -> int:
        """The UNet's native size in latent pixels (64 for SD 2-base, 96 for SD 2 768-v)."""
        return int(self.unet.config.sample_size)

    @property
    def latent_channels(self) -> int:
        """The UNet's input channels (4 for Stable Diffusion)."""
        return int(self.unet.config.in_channels)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The UNet."""
        return self.unet

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
            embeds = cond.cond[EMBEDS]
            return self.unet(x, t, encoder_hidden_states=embeds, **self._control(x, t, embeds, cond, 1)).sample
        both, x2 = torch.cat([cond.uncond[EMBEDS], cond.cond[EMBEDS]]), torch.cat([x, x])
        extra = self._control(x2, t, both, cond, 2)
        uncond, guided = self.unet(x2, t, encoder_hidden_states=both, **extra).sample.chunk(2)
        return uncond + guidance_scale * (guided - uncond)

    def _control(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        embeds: torch.Tensor,
        cond: Conditioning,
        copies: int,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> dict:
        """The ControlNet residuals for the UNet call (none without a ControlNet); each row's control crops come
        with ``cond`` (:data:`syncguide.control.CONTROL`), repeated ``copies`` times as ``x`` is for CFG."""
        if self.control is None:
            return {}
        images = [torch.cat([image] * copies) for image in control_rows(cond)]
        return self.control.residuals(x, t, embeds, images, added_cond_kwargs, cfg=copies == 2)

    def control_inputs(self, crops: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        """What the ControlNet ``net`` reads of control-image crops ``(n, 3, H, W)`` in [0, 1]: the crops
        themselves."""
        return crops


def control_rows(cond: Conditioning) -> list[torch.Tensor]:
    """Each ControlNet's control inputs for ``cond``'s rows (:data:`syncguide.control.CONTROL` keys, in order)."""
    names = sorted((k for k in cond.cond if k.startswith(CONTROL)), key=lambda k: int(k.rpartition("_")[2]))
    return [cond.cond[k] for k in names]


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
