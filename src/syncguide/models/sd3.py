"""The SD3 / SD3.5 backbone: an MMDiT transformer (it patches the latents itself), three text encoders (CLIP-L,
CLIP-G and an optional T5), flow matching.

Prompts are encoded by diffusers' ``StableDiffusion3Pipeline.encode_prompt``: both CLIPs' penultimate states
concatenated and zero-padded to T5's width, then T5's states (zeros without T5), ``(B, 77 + L, 4096)``, and both
CLIPs' pooled outputs ``(B, 2048)``. CFG is one batched call, uncond first, as the family's pipeline does. The
latents are ``(B, 16, H/8, W/8)`` with the VAE's shift and scale; x0 = x_t - sigma_t * v.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from syncguide.errors import SettingError
from syncguide.models.backbone import Conditioning
from syncguide.models.flux import set_flow_timesteps
from syncguide.models.latent import EMBEDS, LatentModel, pooled_rows
from syncguide.models.sd import warn_if_cut

POOLED = "pooled_prompt_embeds"


@dataclass
class SD3Backbone(LatentModel):
    """An SD3 / SD3.5 model seen as a :class:`~syncguide.models.backbone.Backbone` (see the module docstring)."""

    vae: AutoencoderKL
    text_encoder: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer
    text_encoder_2: CLIPTextModelWithProjection
    tokenizer_2: CLIPTokenizer
    text_encoder_3: torch.nn.Module | None
    tokenizer_3: object | None
    transformer: SD3Transformer2DModel
    scheduler: SchedulerMixin
    decoder: torch.nn.Module | None = None
    max_sequence_length: int = 256

    @property
    def window(self) -> int:
        """The transformer's native size in latent pixels (128: 1024 px)."""
        return int(self.transformer.config.sample_size)

    @property
    def denoiser(self) -> torch.nn.Module:
        """The transformer."""
        return self.transformer

    @property
    def latent_channels(self) -> int:
        """The transformer's input channels (16)."""
        return int(self.transformer.config.in_channels)

    def _reference(self) -> StableDiffusion3Pipeline:
        return StableDiffusion3Pipeline(
            transformer=self.transformer,
            scheduler=self.scheduler,
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            text_encoder_2=self.text_encoder_2,
            tokenizer_2=self.tokenizer_2,
            text_encoder_3=self.text_encoder_3,
            tokenizer_3=self.tokenizer_3,
        )

    @torch.no_grad()
    def encode_prompt(
        self,
        prompts: list[str] | None,
        negatives: list[str] | None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        """The three encoders' embeddings of B prompts; ``negatives`` enable CFG (an empty one encodes ``""``, as
        diffusers' SD3 pipeline)."""
        if prompt_embeds is not None or negative_prompt_embeds is not None:
            raise SettingError("prompt_embeds", "SD3 also needs pooled embeddings; pass the prompt text instead")
        warn_if_cut(self.tokenizer, prompts + (negatives or []))
        encoded = self._reference().encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.transformer.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=negatives is not None,
            negative_prompt=negatives,
            max_sequence_length=self.max_sequence_length,
        )
        return pooled_rows(encoded, POOLED, self.dtype, negatives is not None)

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity for window latents ``x`` ``(n, 16, h, w)``, with CFG when ``cond.uncond`` is set;
        ``positions`` are not used (the transformer's own position embedding covers a window)."""
        if cond.uncond is None:
            return self._run(x, t, cond.cond[EMBEDS], cond.cond[POOLED])
        embeds = torch.cat([cond.uncond[EMBEDS], cond.cond[EMBEDS]])
        pooled = torch.cat([cond.uncond[POOLED], cond.cond[POOLED]])
        uncond, guided = self._run(torch.cat([x, x]), t, embeds, pooled).chunk(2)
        return uncond + guidance_scale * (guided - uncond)

    def _run(self, x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return self.transformer(
            hidden_states=x,
            timestep=t.expand(x.shape[0]),
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]

    def set_timesteps(self, scheduler: SchedulerMixin, steps: int, device: torch.device, window: int) -> None:
        """``StableDiffusion3Pipeline``'s timesteps: the scheduler's own sigmas (shift 3.0 for SD3), or ``mu`` of
        the window's token count where it shifts dynamically."""
        tokens = (window // int(self.transformer.config.patch_size)) ** 2
        set_flow_timesteps(scheduler, steps, device, tokens, sigmas=False, max_shift=1.16)
