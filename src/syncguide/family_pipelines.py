"""``SyncDiffusionPipeline`` for SDXL, FLUX.1 and SD3: the same panoramas, layouts, sync and SDG through the
backbone seam, with each family's components, defaults and conditioning.

``SyncDiffusionPipeline.from_pretrained(ID_OR_DIR)`` returns one of these for a checkpoint of the family (its
``model_index.json`` says which); each also loads directly (``SyncFluxPipeline.from_pretrained(...)``). The call
arguments are the base class's; the families' own ones that make sense per window are settings of the same names as
diffusers' (``true_cfg_scale``, ``max_sequence_length``, ``guidance_scale``, ``negative_prompt``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel

from syncguide.control import as_multi
from syncguide.models import families
from syncguide.models.backbone import Backbone
from syncguide.models.flux import DEFAULT_WINDOW, FluxBackbone
from syncguide.models.sd3 import SD3Backbone
from syncguide.models.sdxl import StableDiffusionXLBackbone
from syncguide.pipeline import SyncDiffusionPipeline
from syncguide.settings import PanoramaSettings


def _family_settings(defaults: families.Defaults, window: int) -> PanoramaSettings:
    return PanoramaSettings(
        stride=max(1, window // defaults.stride_fraction),
        num_inference_steps=defaults.steps,
        guidance_scale=defaults.guidance_scale,
        max_sequence_length=defaults.max_sequence_length,
    )


class SyncDiffusionXLPipeline(SyncDiffusionPipeline):
    """SDXL panoramas (``StableDiffusionXLPipeline`` checkpoints); DDIM by default, as for SD.

    ``micro_conditioning`` (a setting) chooses each window's size/crop conditioning (:mod:`syncguide.models.sdxl`).
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->unet->vae"
    family: ClassVar[str] = families.SDXL

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        tokenizer_2: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: Any,
        force_zeros_for_empty_prompt: bool = True,
        controlnet: Any = None,
    ) -> None:
        """``controlnet``: an SDXL ``ControlNetModel`` or a list of them (optional, as on SD)."""
        super(SyncDiffusionPipeline, self).__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=scheduler,
            controlnet=as_multi(controlnet),
        )
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self._default_loss = None

    def make_backbone(
        self, settings: PanoramaSettings | None = None, canvas: tuple[int, int] | None = None
    ) -> Backbone:
        """The SDXL backbone with the call's micro-conditioning convention and canvas size."""
        return StableDiffusionXLBackbone(
            self.vae,
            self.text_encoder,
            self.tokenizer,
            self.unet,
            text_encoder_2=self.text_encoder_2,
            tokenizer_2=self.tokenizer_2,
            scheduler=self.scheduler,
            force_zeros_for_empty_prompt=self.config.force_zeros_for_empty_prompt,
            micro_conditioning=(settings or PanoramaSettings()).micro_conditioning,
            canvas=canvas,
        )

    def default_settings(self) -> PanoramaSettings:
        """SDXL's defaults: 50 steps, CFG 5.0 (diffusers' StableDiffusionXLPipeline)."""
        return _family_settings(families.DEFAULTS[families.SDXL], int(self.unet.config.sample_size))


class _FlowPipeline(SyncDiffusionPipeline):
    """What the flow-matching families share: their own scheduler kept, a transformer and no UNet."""

    default_scheduler: ClassVar[str | None] = None

    @property
    def unet(self) -> None:
        """A flow-matching family has no UNet (its denoiser is ``transformer``)."""
        return None


class SyncFluxPipeline(_FlowPipeline):
    """FLUX.1 dev / schnell panoramas (``FluxPipeline`` checkpoints) with their flow-matching scheduler.

    ``guidance_scale`` is the distilled guidance embedding (default 3.5; schnell has none); ``true_cfg_scale`` > 1
    runs diffusers' true CFG with ``negative_prompt``; ``max_sequence_length`` T5 tokens (512; schnell 256).
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->transformer->vae"
    family: ClassVar[str] = families.FLUX

    def __init__(
        self,
        scheduler: Any,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        text_encoder_2: T5EncoderModel,
        tokenizer_2: Any,
        transformer: FluxTransformer2DModel,
        controlnet: Any = None,
    ) -> None:
        """``controlnet``: a ``FluxControlNetModel`` or a list of them (optional, as on SD)."""
        super(SyncDiffusionPipeline, self).__init__()
        self.register_modules(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            transformer=transformer,
            controlnet=as_multi(controlnet),
        )
        self._default_loss = None

    def _defaults(self) -> families.Defaults:
        return families.defaults_for(families.FLUX, bool(self.transformer.config.guidance_embeds))

    def make_backbone(
        self, settings: PanoramaSettings | None = None, canvas: tuple[int, int] | None = None
    ) -> Backbone:
        """The FLUX backbone with the call's true CFG scale and T5 length."""
        settings = settings or self.default_settings()
        return FluxBackbone(
            self.vae,
            self.text_encoder,
            self.tokenizer,
            self.text_encoder_2,
            self.tokenizer_2,
            self.transformer,
            self.scheduler,
            true_cfg_scale=settings.true_cfg_scale,
            max_sequence_length=settings.max_sequence_length or self._defaults().max_sequence_length,
            window_size=settings.window or DEFAULT_WINDOW,
        )

    def default_settings(self) -> PanoramaSettings:
        """FLUX.1's defaults: dev 28 steps, guidance 3.5, 512 T5 tokens; schnell 4 steps, 0, 256."""
        return _family_settings(self._defaults(), DEFAULT_WINDOW)

    def uses_cfg(self, settings: PanoramaSettings) -> bool:
        """True CFG (a negative pass) only when ``true_cfg_scale`` > 1; ``guidance_scale`` is the embedding."""
        return settings.true_cfg_scale > 1


class SyncSD3Pipeline(_FlowPipeline):
    """SD3 / SD3.5 panoramas (``StableDiffusion3Pipeline`` checkpoints; T5 optional: ``text_encoder_3=None``)."""

    model_cpu_offload_seq = "text_encoder->text_encoder_2->text_encoder_3->transformer->vae"
    _optional_components: ClassVar[list[str]] = ["text_encoder_3", "tokenizer_3"]
    family: ClassVar[str] = families.SD3

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        scheduler: Any,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer_2: CLIPTokenizer,
        text_encoder_3: T5EncoderModel | None = None,
        tokenizer_3: Any = None,
    ) -> None:
        super(SyncDiffusionPipeline, self).__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            text_encoder_3=text_encoder_3,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            tokenizer_3=tokenizer_3,
            transformer=transformer,
            scheduler=scheduler,
        )
        self._default_loss = None

    def make_backbone(
        self, settings: PanoramaSettings | None = None, canvas: tuple[int, int] | None = None
    ) -> Backbone:
        """The SD3 backbone with the call's T5 length."""
        settings = settings or self.default_settings()
        return SD3Backbone(
            self.vae,
            self.text_encoder,
            self.tokenizer,
            self.text_encoder_2,
            self.tokenizer_2,
            self.text_encoder_3,
            self.tokenizer_3,
            self.transformer,
            self.scheduler,
            max_sequence_length=settings.max_sequence_length or families.DEFAULTS[families.SD3].max_sequence_length,
        )

    def default_settings(self) -> PanoramaSettings:
        """SD3's defaults: 28 steps, CFG 7.0, 256 T5 tokens (diffusers' StableDiffusion3Pipeline)."""
        return _family_settings(families.DEFAULTS[families.SD3], int(self.transformer.config.sample_size))
