"""The FLUX.1 backbone (dev and schnell): a transformer over 2x2-packed latent tokens, T5 + CLIP prompts, flow
matching, the distilled guidance embedding and optional true CFG.

The joint loop keeps the canvas unpacked, ``(B, 16, H/8, W/8)``; :meth:`FluxBackbone.predict` packs each window's
latents into 2x2 patch tokens, gives every window the image ids (row/column rotary positions) of a native image of
the window's size, runs the transformer and unpacks the velocity. So fusion, region masks (on the latent grid: a
packed token is one 2x2 cell of it) and 360-degree wrap work as on every family. The timestep shift ``mu`` comes
from the window's token count, as diffusers' ``FluxPipeline`` computes it for an image of that size.

``guidance_scale`` is the distilled guidance embedding (FLUX.1-dev; schnell has none and ignores it);
``true_cfg_scale`` > 1 with a negative prompt adds diffusers' "true CFG": a second pass on the negative prompt,
``neg + true_cfg_scale * (cond - neg)``. Prompts are encoded by diffusers' ``FluxPipeline.encode_prompt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel

from syncguide.control import FluxControl, nets_of, xlabs_style
from syncguide.errors import SettingError
from syncguide.models.backbone import Conditioning
from syncguide.models.latent import EMBEDS, LatentModel
from syncguide.models.sd import control_rows, warn_if_cut

POOLED = "pooled_prompt_embeds"
DEFAULT_WINDOW = 128
"""diffusers' ``FluxPipeline.default_sample_size``: 128 latent pixels (1024 px)."""


@dataclass
class FluxBackbone(LatentModel):
    """A FLUX.1 model seen as a :class:`~syncguide.models.backbone.Backbone` (see the module docstring).

    Conditioning rows: ``prompt_embeds`` ``(B, max_sequence_length, 4096)`` (T5) and ``pooled_prompt_embeds``
    ``(B, 768)`` (CLIP). ``window_size`` is the native window in latent pixels.
    """

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    text_encoder_2: T5EncoderModel
    tokenizer_2: object
    transformer: FluxTransformer2DModel
    scheduler: SchedulerMixin
    decoder: torch.nn.Module | None = None
    true_cfg_scale: float = 1.0
    max_sequence_length: int = 512
    window_size: int = DEFAULT_WINDOW
    control: FluxControl | None = None

    @property
    def window(self) -> int:
        """The native window in latent pixels (128: 1024 px)."""
        return self.window_size

    @property
    def denoiser(self) -> torch.nn.Module:
        """The transformer."""
        return self.transformer

    @property
    def latent_channels(self) -> int:
        """Channels of the unpacked latent canvas (16 for FLUX.1): the transformer's input over 2x2 packing."""
        return int(self.transformer.config.in_channels) // 4

    def _reference(self) -> FluxPipeline:
        return FluxPipeline(
            scheduler=self.scheduler,
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            text_encoder_2=self.text_encoder_2,
            tokenizer_2=self.tokenizer_2,
            transformer=self.transformer,
        )

    @torch.no_grad()
    def encode_prompt(
        self,
        prompts: list[str] | None,
        negatives: list[str] | None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        """T5 and CLIP embeddings of B prompts; ``negatives`` are encoded for true CFG (used when
        ``true_cfg_scale`` > 1)."""
        if prompt_embeds is not None or negative_prompt_embeds is not None:
            raise SettingError("prompt_embeds", "FLUX also needs pooled embeddings; pass the prompt text instead")
        reference = self._reference()
        warn_if_cut(self.tokenizer, prompts + (negatives or []))

        def encode(texts: list[str]) -> dict[str, torch.Tensor]:
            embeds, pooled, _ = reference.encode_prompt(
                prompt=texts,
                device=self.transformer.device,
                num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length,
            )
            return {EMBEDS: embeds.to(self.dtype), POOLED: pooled.to(self.dtype)}

        return Conditioning(encode(prompts), None if negatives is None else encode(negatives))

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The velocity for window latents ``x`` ``(n, C, h, w)`` (h, w even): packed, the transformer with the
        guidance embedding ``guidance_scale`` (if the model has one), true CFG when ``cond.uncond`` is set and
        ``true_cfg_scale`` > 1, unpacked; with the ControlNet's block samples when there is one
        (``FluxControlNetPipeline``). ``positions`` are not used: every window gets a native image's ids."""
        n, c, h, w = x.shape
        packed = FluxPipeline._pack_latents(x, n, c, h, w)
        image_ids = FluxPipeline._prepare_latent_image_ids(n, h // 2, w // 2, x.device, x.dtype)
        timestep = t.expand(n).to(x.dtype) / 1000
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full([1], guidance_scale, device=x.device, dtype=torch.float32).expand(n)

        text_ids = torch.zeros(cond.cond[EMBEDS].shape[1], 3, device=x.device, dtype=self.text_encoder.dtype)
        extra = {}
        if self.control is not None:  # computed on the prompt only and shared with true CFG's pass, as diffusers
            rows = control_rows(cond)
            extra = self.control.flux_residuals(packed, timestep, guidance_scale, cond.cond, text_ids, image_ids, rows)

        def run(part: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.transformer(
                hidden_states=packed,
                timestep=timestep,
                guidance=guidance,
                pooled_projections=part[POOLED],
                encoder_hidden_states=part[EMBEDS],
                txt_ids=text_ids,
                img_ids=image_ids,
                return_dict=False,
                **extra,
            )[0]

        out = run(cond.cond)
        if cond.uncond is not None and self.true_cfg_scale > 1:
            negative = run(cond.uncond)
            out = negative + self.true_cfg_scale * (out - negative)
        return FluxPipeline._unpack_latents(out, h * self.vae_scale, w * self.vae_scale, self.vae_scale)

    @torch.no_grad()
    def control_inputs(self, crops: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        """What the FLUX ControlNet ``net`` reads of control-image crops ``(n, 3, H, W)`` in [0, 1], as
        ``FluxControlNetPipeline`` prepares its control image. XLabs-style: the crops in [-1, 1]. InstantX-style:
        their VAE latents (of the crops in [-1, 1], shifted and scaled as the latents are) packed in 2x2 patches,
        ``(n, H*W / (2s)^2, 4C)``; the latent distribution's mode, where diffusers samples it: deterministic, so
        windows that overlap read the same latents for the same pixels (FLUX's VAE posterior is nearly a point)."""
        if net is not None and xlabs_style(nets_of(net)[0]):
            return (crops * 2 - 1).to(self.dtype)
        vae, parts = self.vae, []
        for chunk in crops.split(8):  # bounded memory: a wide canvas has many windows
            latents = vae.encode(chunk.to(vae.device, vae.dtype) * 2 - 1).latent_dist.mode()
            parts.append((latents - vae.config.shift_factor) * vae.config.scaling_factor)
        latents = torch.cat(parts).to(self.dtype)
        return FluxPipeline._pack_latents(latents, *latents.shape)

    def set_timesteps(self, scheduler: SchedulerMixin, steps: int, device: torch.device, window: int) -> None:
        """``FluxPipeline``'s timesteps for one window: sigmas from 1 to 1/steps, shifted by ``mu`` of the window's
        token count (``(window/2)^2``)."""
        set_flow_timesteps(scheduler, steps, device, (window // 2) ** 2, sigmas=True, max_shift=1.15)


def set_flow_timesteps(
    scheduler: SchedulerMixin, steps: int, device: torch.device, tokens: int, sigmas: bool, max_shift: float
) -> None:
    """Set a flow-matching scheduler's timesteps as diffusers' FLUX / SD3 pipelines do for an image of ``tokens``
    patch tokens: ``mu`` from :func:`calculate_shift` where the scheduler shifts dynamically; ``sigmas``: pass
    FLUX's ``linspace(1, 1/steps, steps)`` (unless the scheduler uses its own flow sigmas). Starts at step 0."""
    config = scheduler.config
    kwargs = {}
    if sigmas or config.get("use_dynamic_shifting", False):
        kwargs["mu"] = calculate_shift(
            tokens,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", max_shift),
        )
    schedule = np.linspace(1.0, 1 / steps, steps) if sigmas and not config.get("use_flow_sigmas", False) else None
    retrieve_timesteps(scheduler, steps, device, sigmas=schedule, **kwargs)
    scheduler.set_begin_index(0)
