"""``SyncDiffusionPipeline``: MultiDiffusion and SyncDiffusion panoramas and layouts on Stable Diffusion 1.x/2.x,
SDXL, FLUX.1 and SD3.

Loads like any diffusers pipeline: ``SyncDiffusionPipeline.from_pretrained(hub_id_or_dir)`` reads the checkpoint's
family from its ``model_index.json`` (:mod:`syncguide.models.families`) and returns the family's pipeline
(this class for SD 1.x/2.x; :mod:`syncguide.family_pipelines` for the others); ``from_pipe(a_diffusers_pipeline)``
likewise. SD and SDXL default to DDIM, the papers' scheduler, with the checkpoint's noise schedule; FLUX and SD3 keep
their flow-matching scheduler. ``__call__`` takes diffusers' usual arguments; the window, sync and layout parameters
are the fields of :class:`~syncguide.settings.PanoramaSettings`, passed as keywords of the same names or as one
``settings=`` object, with the family's defaults (:data:`syncguide.models.families.DEFAULTS`) where not given.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from syncguide import memory, parallel
from syncguide.control import (
    CONTROL,
    CONTROL_FAMILIES,
    Control,
    FluxControl,
    as_multi,
    check_controlnet,
    control_tensor,
    fit_control_image,
    n_nets,
    nets_of,
    window_crops,
)
from syncguide.errors import OutOfMemory, SettingError
from syncguide.guidance.perceptual import PerceptualLoss, lpips_vgg
from syncguide.guidance.semantic import Guidance
from syncguide.layout import Layout
from syncguide.models import families
from syncguide.models.backbone import Backbone, Conditioning
from syncguide.models.latent import vae_decode
from syncguide.models.sd import StableDiffusionBackbone
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.sampling.hooks import (
    Bootstrap,
    BootstrapHook,
    ControlHook,
    SemanticHook,
    StepHook,
    SyncHook,
    SyncOptions,
    flat_colours,
)
from syncguide.sampling.joint import StepCallback, sample_joint
from syncguide.sampling.plan import panorama_plan, plan_conditioning, region_plan
from syncguide.schedulers import FLOW_SCHEDULERS, SCHEDULERS, check_scheduler, check_steps, make_scheduler
from syncguide.settings import PanoramaSettings
from syncguide.tiling import Window, make_windows

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class PanoramaOutput(BaseOutput):
    """``images``: a list of PIL images, a ``(B, H, W, 3)`` array or a ``(B, 3, H, W)`` tensor in [0, 1] (on the
    pipeline's device and dtype), or latents ``(B, C, H/8, W/8)`` for ``output_type="latent"``.
    ``nsfw_content_detected``: always None (there is no safety checker), as in diffusers' SD outputs."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    nsfw_content_detected: list[bool] | None = None


@dataclass(frozen=True)
class _Call:
    """The per-call arguments shared by ``__call__`` and ``layout`` besides the prompts and settings."""

    generator: torch.Generator | list[torch.Generator] | None
    latents: torch.Tensor | None
    output_type: str
    return_dict: bool
    callback_on_step_end: Callable[..., dict] | None
    tensor_inputs: Sequence[str]
    perceptual_loss: PerceptualLoss | None
    semantic_guidance: Guidance | None
    memory_check: bool = True
    sync_decoder: torch.nn.Module | None = None
    preview: Callable[[int, list[PIL.Image.Image]], None] | None = None
    preview_every: int = 5
    parallel: bool = False
    control: ControlArguments | None = None


@dataclass(frozen=True)
class ControlArguments:
    """The ControlNet arguments of a call, under diffusers' names (one value, or one per ControlNet)."""

    control_image: Any
    controlnet_conditioning_scale: float | list[float] = 1.0
    control_guidance_start: float | list[float] = 0.0
    control_guidance_end: float | list[float] = 1.0
    guess_mode: bool = False


class SyncDiffusionPipeline(DiffusionPipeline):
    """Wide images from a text prompt by joint diffusion of overlapping windows, optionally synchronised.

    With ``sync_weight=0`` (or ``sync_steps=0``) this is MultiDiffusion exactly.

    References:
        Bar-Tal et al., "MultiDiffusion", ICML 2023; Lee et al., "SyncDiffusion", NeurIPS 2023.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "denoised"]
    family: ClassVar[str] = families.SD
    default_scheduler: ClassVar[str | None] = "ddim"  # set by from_pretrained / from_pipe (None: keep the model's)
    # family -> pipeline class; the family pipelines (syncguide.family_pipelines, imported by the package) add
    # themselves as they are defined
    family_classes: ClassVar[dict[str, type[SyncDiffusionPipeline]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "family" in cls.__dict__:  # a class that names its own family (not a shared base or a user's subclass)
            SyncDiffusionPipeline.family_classes.setdefault(cls.family, cls)

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: Any,
        controlnet: Any = None,
    ) -> None:
        """``controlnet``: a diffusers ``ControlNetModel``, or a list of them (diffusers' ``MultiControlNetModel``),
        for ``control_image=`` calls; None: none. It is an optional parameter, not one of :attr:`components`, so
        ``StableDiffusionPipeline(**pipe.components)`` keeps working; pass it to ``from_pretrained`` or here."""
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            controlnet=as_multi(controlnet),
        )
        self._default_loss: PerceptualLoss | None = None

    @classmethod
    def from_pretrained(cls, pretrained: Any, *args: Any, **kwargs: Any) -> SyncDiffusionPipeline:
        """Load like ``DiffusionPipeline.from_pretrained``. Called on this class, the checkpoint's family (from its
        ``model_index.json``) picks the pipeline class; an unsupported one is a
        :class:`~syncguide.errors.SettingError` naming its class and the supported list. SD and SDXL: the scheduler
        becomes DDIM (the papers') with the checkpoint's noise schedule, unless a ``scheduler=`` is passed. A
        ControlNet saved with the pipeline (``save_pretrained``, a local directory) loads with it unless a
        ``controlnet=`` is passed."""
        if cls is SyncDiffusionPipeline:
            target = pipeline_class(family_of(pretrained, kwargs))
            if target is not cls:
                return target.from_pretrained(pretrained, *args, **kwargs)
        if "controlnet" not in kwargs:
            kwargs = {**kwargs, "controlnet": _saved_controlnet(pretrained, kwargs.get("torch_dtype"))}
        pipe = super().from_pretrained(pretrained, *args, **kwargs)
        if "scheduler" not in kwargs and cls.default_scheduler:
            pipe.set_scheduler(cls.default_scheduler)
        return pipe

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained``, and the ControlNet (diffusers leaves an optional parameter out): in
        ``controlnet``, and ``controlnet_1``, ... for several, as ``MultiControlNetModel`` saves them."""
        super().save_pretrained(save_directory, **kwargs)
        net = getattr(self, "controlnet", None)
        safe = kwargs.get("safe_serialization", True)
        for k, one in enumerate(nets_of(net) if net is not None else []):
            one.save_pretrained(Path(save_directory) / ("controlnet" + (f"_{k}" if k else "")), safe_serialization=safe)

    @classmethod
    def from_pipe(cls, pipeline: DiffusionPipeline, **kwargs: Any) -> SyncDiffusionPipeline:
        """Share ``pipeline``'s modules (diffusers' ``from_pipe``), as the pipeline class of its family when called
        on this class; the scheduler as in :meth:`from_pretrained`, unless a ``scheduler=`` is passed."""
        if cls is SyncDiffusionPipeline:
            index = {name: ["diffusers", type(module).__name__] for name, module in pipeline.components.items()}
            family = families.family_of_index({"_class_name": type(pipeline).__name__, **index})
            target = pipeline_class(family, type(pipeline).__name__)
            if target is not cls:
                return target.from_pipe(pipeline, **kwargs)
        pipe = super().from_pipe(pipeline, **kwargs)
        if "scheduler" not in kwargs and cls.default_scheduler:
            pipe.set_scheduler(cls.default_scheduler)
        return pipe

    @property
    def flow(self) -> bool:
        """Whether the family is a flow-matching one (FLUX.1, SD3: :data:`syncguide.models.families.FLOW`)."""
        return self.family in families.FLOW

    @property
    def backbone(self) -> Backbone:
        """The components seen through the sampler's backbone seam (:mod:`syncguide.models.backbone`)."""
        return self.make_backbone()

    def make_backbone(
        self, settings: PanoramaSettings | None = None, canvas: tuple[int, int] | None = None
    ) -> Backbone:
        """The backbone for a call with ``settings`` on a canvas of ``canvas`` (height, width) pixels."""
        return StableDiffusionBackbone(self.vae, self.text_encoder, self.tokenizer, self.unet)

    def default_settings(self) -> PanoramaSettings:
        """The family's defaults (:func:`syncguide.models.families.defaults_for`) as settings."""
        return PanoramaSettings()

    def uses_cfg(self, settings: PanoramaSettings) -> bool:
        """Whether a call with ``settings`` runs classifier-free guidance (with the negative prompt)."""
        return settings.guidance_scale > 1

    def set_scheduler(self, name: str) -> None:
        """Replace the scheduler by ``name`` (ddim, ddpm, dpm++, unipc, pndm; flow-euler for FLUX.1 and SD3),
        keeping its noise schedule."""
        allowed = tuple(FLOW_SCHEDULERS if self.flow else SCHEDULERS)
        if name not in allowed:
            raise SettingError(
                "scheduler", f"must be one of {', '.join(allowed)} for {families.NAMES[self.family]}; got {name!r}"
            )
        self.scheduler = make_scheduler(name, self.scheduler.config)

    def default_perceptual_loss(self) -> PerceptualLoss:
        """LPIPS-VGG on this pipeline's device, built on first use."""
        if self._default_loss is None:
            self._default_loss = lpips_vgg(self._execution_device)
        return self._default_loss

    def __call__(
        self,
        prompt: str | list[str] | None = None,
        *,
        settings: PanoramaSettings | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        perceptual_loss: PerceptualLoss | None = None,
        semantic_guidance: Guidance | None = None,
        memory_check: bool = True,
        sync_decoder: torch.nn.Module | None = None,
        preview: Callable[[int, list[PIL.Image.Image]], None] | None = None,
        preview_every: int = 5,
        parallel: bool = False,
        control_image: Any = None,
        controlnet_conditioning_scale: float | list[float] = 1.0,
        control_guidance_start: float | list[float] = 0.0,
        control_guidance_end: float | list[float] = 1.0,
        guess_mode: bool = False,
        **options: Any,
    ) -> PanoramaOutput | tuple:
        """Generate panoramas.

        Args:
            prompt: one text or a list (one panorama per prompt); or None with ``prompt_embeds``.
            settings: a :class:`~syncguide.settings.PanoramaSettings`; ``options`` override its fields.
            prompt_embeds, negative_prompt_embeds: text-encoder states ``(B, L, D)`` used instead of encoding
                ``prompt`` / ``negative_prompt``.
            latents: initial noise ``(B, C, height/8, width/8)``; used exactly as given.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` (device and dtype kept) or ``"latent"``.
            callback_on_step_end: ``f(pipe, i, t, callback_kwargs) -> dict`` (diffusers' convention);
                ``callback_kwargs`` holds the names in ``callback_on_step_end_tensor_inputs``, each one of
                :attr:`_callback_tensor_inputs`: ``latents`` (the canvas after step i, replaceable by returning
                ``{"latents": ...}``) and ``denoised`` (the fused x0 prediction of step i).
            perceptual_loss: distance ``(a, b) -> (B,)`` on [-1, 1] images; default LPIPS-VGG.
            semantic_guidance: SDG guidance (:mod:`syncguide.guidance.semantic`) applied to every window through
                its decoded x0 prediction, e.g. a :class:`~syncguide.guidance.semantic.StyleGuidance` for "a
                panorama of PROMPT in the style of REF"; composes with sync.
            sync_decoder: a decoder for SyncDiffusion's gradient path only (and the anchor's target), e.g. diffusers'
                ``AutoencoderTiny`` (TAESD: taesd, taesdxl, taesd3, taef1) for this model's latents; the final image
                is still decoded by the full VAE. Its latent channels must be the model's.
            preview, preview_every: live previews: ``preview(i, images)`` gets the fused x0 prediction of step i
                as PIL images every ``preview_every`` steps and at the last, decoded by ``sync_decoder`` when given
                (a tiny decoder: nearly free), else the VAE.
            parallel: window parallelism (:mod:`syncguide.parallel`): in a run of several processes (``accelerate
                launch --num_processes N``, each process with its own device and the same arguments), each process
                denoises its share of the windows and of the sync and SDG gradient passes, and all return the
                same images, bit for bit those of one process (on the same kind of device). A SettingError if the
                processes were given different prompts, settings, seeds or models; ParallelError if one stops or
                does not answer. Only rank 0 shows a progress bar. One process: the same as False.
            control_image: with the pipeline's ``controlnet``: the control image of the whole canvas (PIL image,
                array or tensor in [0, 1]; a list, one per ControlNet), resized to the canvas (its aspect ratio may
                differ by :data:`syncguide.control.ASPECT_TOLERANCE` at most); each window gets its own crop, which
                wraps in 360-degree mode. ``controlnet_conditioning_scale``, ``control_guidance_start``,
                ``control_guidance_end``: as in diffusers' ControlNet pipelines (one value, or one per ControlNet).
                ``guess_mode`` (SD 1.x/2.x, SDXL): as diffusers', the ControlNet reads the prompt's half of CFG only
                and its residuals are scaled down towards the shallow blocks (A1111's "ControlNet is more
                important"); on where the ControlNet's config sets ``global_pool_conditions``. Exact sync
                differentiates through the ControlNet; fast sync holds its output (and so its residuals).
            memory_check: estimate the memory the run needs first (:mod:`syncguide.memory`) and raise
                :class:`~syncguide.errors.OutOfMemory` (a MemoryError saying which settings shrink it) where it
                clearly exceeds what the device has free; an out-of-memory error while sampling raises the same.
            options: any field of :class:`~syncguide.settings.PanoramaSettings`: ``negative_prompt``,
                ``height``, ``width`` (pixels; default one window high and six wide, 512 x 3072 for SD 2-base,
                the paper's setting), ``num_inference_steps``, ``guidance_scale``, ``stride`` (latent pixels),
                ``window``, ``circular_padding`` (``circular`` is a deprecated alias), ``eta``,
                ``view_batch_size``, ``num_images_per_prompt``, ``sync_weight``, ``sync_decay``, ``sync_steps``,
                ``sync_every``, ``sync_batch_size``, ``sync_checkpointing``.
        Returns:
            :class:`PanoramaOutput`, or ``(images, None)`` if ``return_dict=False`` (as diffusers' SD pipelines).
        """
        settings = PanoramaSettings.build(settings or self.default_settings(), **options)
        self._check_call(output_type, callback_on_step_end_tensor_inputs, settings)
        cond = self._encode(prompt, settings, prompt_embeds, negative_prompt_embeds)
        call = _Call(
            generator,
            latents,
            output_type,
            return_dict,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            perceptual_loss,
            semantic_guidance,
            memory_check,
            sync_decoder,
            preview,
            preview_every,
            parallel,
            _control_arguments(
                control_image, controlnet_conditioning_scale, control_guidance_start, control_guidance_end, guess_mode
            ),
        )
        return self._generate([cond], None, settings, call)

    def layout(
        self,
        layout: Layout,
        *,
        settings: PanoramaSettings | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        perceptual_loss: PerceptualLoss | None = None,
        semantic_guidance: Guidance | None = None,
        memory_check: bool = True,
        sync_decoder: torch.nn.Module | None = None,
        preview: Callable[[int, list[PIL.Image.Image]], None] | None = None,
        preview_every: int = 5,
        parallel: bool = False,
        control_image: Any = None,
        controlnet_conditioning_scale: float | list[float] = 1.0,
        control_guidance_start: float | list[float] = 0.0,
        control_guidance_end: float | list[float] = 1.0,
        guess_mode: bool = False,
        **options: Any,
    ) -> PanoramaOutput | tuple:
        """Generate images from a layout: a background prompt plus (prompt, mask) regions (region MultiDiffusion).

        Each prompt is denoised on every window its mask touches and fused with its mask (resized to the latent
        grid, binarised) as weight; the background takes the pixels no region covers; overlapping regions are
        averaged. The arguments shared with :meth:`__call__` mean the same (``semantic_guidance`` acts on every
        window of every prompt); the layout's own settings:

        Args:
            layout: :class:`~syncguide.layout.Layout` (``Layout("a summer landscape", (Region("snow",
                box=(0.25, 0, 0.75, 1)),))``). A region covering no latent pixel raises ValueError.
            options: as :meth:`__call__`; ``negative_prompt`` is one text, used for every prompt;
                ``num_images_per_prompt`` is the number of images of the layout; ``bootstrap_fraction`` in
                [0, 1]: during the first ``round(fraction * steps)`` steps each region's windows show a noised
                flat random colour outside its mask (MultiDiffusion's bootstrapping; default 20%); the sync
                options pull the background's windows towards its anchor (the centre window among those it
                touches; ``sync_weight=0`` gives region MultiDiffusion bit for bit); ``sync_regions`` also pulls
                each region's windows towards that region's own anchor.
        Returns:
            :class:`PanoramaOutput`, or ``(images, None)`` if ``return_dict=False``.
        """
        settings = PanoramaSettings.build(settings or self.default_settings(), **options)
        self._check_call(output_type, callback_on_step_end_tensor_inputs, settings)
        n = settings.num_images_per_prompt
        negatives = [settings.negative_prompt] * n if self.uses_cfg(settings) else None
        backbone = self.make_backbone(settings)
        conds = [backbone.encode_prompt([p] * n, negatives) for p in layout.prompts]
        call = _Call(
            generator,
            latents,
            output_type,
            return_dict,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            perceptual_loss,
            semantic_guidance,
            memory_check,
            sync_decoder,
            preview,
            preview_every,
            parallel,
            _control_arguments(
                control_image, controlnet_conditioning_scale, control_guidance_start, control_guidance_end, guess_mode
            ),
        )
        return self._generate(conds, layout, settings, call)

    def _check_call(self, output_type: str, tensor_inputs: Sequence[str], settings: PanoramaSettings) -> None:
        """ValueError for a bad output type, callback tensor name, scheduler or step count, before any work."""
        if output_type not in OUTPUT_TYPES:
            raise SettingError("output_type", f"must be one of {', '.join(OUTPUT_TYPES)}; got {output_type!r}")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise SettingError(
                "callback_on_step_end_tensor_inputs",
                f"must be among {', '.join(self._callback_tensor_inputs)}; got {unknown[0]!r}",
            )
        check_scheduler(self.scheduler, flow=self.flow)
        check_steps(self.scheduler, settings.num_inference_steps)

    def _encode(
        self,
        prompt: str | list[str] | None,
        settings: PanoramaSettings,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
    ) -> Conditioning:
        """The conditioning of every image: B = prompts (or ``prompt_embeds`` rows) x ``num_images_per_prompt``."""
        if (prompt is None) == (prompt_embeds is None):
            raise SettingError("prompt", "give exactly one of prompt and prompt_embeds")
        per_prompt = settings.num_images_per_prompt
        n_prompts = prompt_embeds.shape[0] if prompt is None else (1 if isinstance(prompt, str) else len(prompt))
        negatives = None
        if self.uses_cfg(settings) and negative_prompt_embeds is None:
            negatives = _negatives(settings.negative_prompt, n_prompts, 1)
        prompts = None if prompt is None else ([prompt] if isinstance(prompt, str) else list(prompt))
        cond = self.make_backbone(settings).encode_prompt(prompts, negatives, prompt_embeds, negative_prompt_embeds)
        if not self.uses_cfg(settings):
            cond = Conditioning(cond.cond)
        return cond.select(torch.arange(n_prompts).repeat_interleave(per_prompt))

    def _generate(
        self, conds: list[Conditioning], layout: Layout | None, settings: PanoramaSettings, call: _Call
    ) -> PanoramaOutput | tuple:
        """Sample the canvas of ``conds`` (one per prompt of ``layout``; one for a plain panorama) and decode it."""
        if isinstance(call.preview_every, bool) or not isinstance(call.preview_every, int) or call.preview_every < 1:
            raise SettingError("preview_every", f"must be an integer >= 1; got {call.preview_every!r}")
        device = self._execution_device
        window, size, windows = _canvas(self.backbone, settings)
        scale = self.backbone.vae_scale
        backbone = self.make_backbone(settings, (size[0] * scale, size[1] * scale))
        plan = panorama_plan(windows) if layout is None else region_plan(layout.masks(*size).to(device), windows)
        b = conds[0].rows
        wrap = seam_padding(window) if settings.circular_padding else 0
        if call.memory_check:
            latent = (size[0], size[1] + 2 * wrap)
            controlled = call.control is not None and getattr(self, "controlnet", None) is not None
            rows = len(plan.windows)
            self._check_memory(backbone, settings, latent, window, b, rows, conds[0], device, controlled)
        workers = parallel.join(device) if call.parallel else parallel.Workers(device=device)
        shape = (b, backbone.latent_channels, *size)
        latents = self._initial_latents(shape, call.generator, call.latents, device, backbone.dtype)
        workers.check_same(self._fingerprint(conds, settings, latents, plan.weights))
        calls = -(-len(plan.windows) // settings.view_batch_size)
        if workers.main and workers.size > calls:
            warnings.warn(
                f"window parallelism: {workers.size} processes share {calls} model calls a step (view_batch_size"
                f" {settings.view_batch_size}): a smaller view_batch_size gives every process work",
                stacklevel=3,
            )
        backbone.set_timesteps(self.scheduler, settings.num_inference_steps, device, window)
        rows_per_call = settings.view_batch_size * b
        control, control_rows = self._control(call.control, settings, backbone, plan, b, size, window, device)
        denoiser = WindowDenoiser(
            backbone,
            self.scheduler,
            self._with_control(plan_conditioning(conds, plan), control_rows),
            settings.guidance_scale,
            rows_per_call,
            plan.positions(b, backbone.vae_scale).to(device),
            workers,
        )
        hooks = self._hooks(backbone, settings, layout, window, call, device, b)
        if control is not None:
            backbone.control = control
            hooks.insert(0, ControlHook(control))  # first: sync's gradient pass calls the model too
        callback = None
        if call.callback_on_step_end is not None:
            callback = self._wrap_callback(call.callback_on_step_end, call.tensor_inputs)
        if call.preview is not None:
            decoder = call.sync_decoder or getattr(backbone, "decoder", None) or backbone.vae
            callback = _previewing(callback, call, decoder, backbone.vae_scale, wrap, settings.num_inference_steps)
        with _reporting_out_of_memory(device):
            latents = sample_joint(
                denoiser,
                latents,
                plan,
                hooks,
                callback,
                denoised="denoised" in call.tensor_inputs or call.preview is not None,
                progress=self._progress(_label(settings, layout), workers.main),
                generator=_first(call.generator),
                eta=settings.eta,
            )
            workers.barrier()  # every process finished: a run that lost one returns nothing
            images = self._postprocess(backbone, latents, call.output_type, wrap)
        self.maybe_free_model_hooks()
        return PanoramaOutput(images=images) if call.return_dict else (images, None)

    def _control(
        self,
        arguments: ControlArguments | None,
        settings: PanoramaSettings,
        backbone: Backbone,
        plan: Any,
        b: int,
        size: tuple[int, int],
        window: int,
        device: torch.device,
    ) -> tuple[Control | None, list[torch.Tensor]]:
        """The call's :class:`~syncguide.control.Control` and each ControlNet's crops for every row of the stack
        ``(n * b, 3, s, s)`` (None, [] without a ControlNet); SettingError for a control image without a
        ControlNet or the reverse, a family without ControlNet support, a wrong count, batch or aspect ratio."""
        net = getattr(self, "controlnet", None)
        if arguments is None and net is None:
            return None, []
        if net is None and self.family not in CONTROL_FAMILIES:
            raise SettingError("control_image", f"ControlNets are not supported for {families.NAMES[self.family]} yet")
        if net is None:
            raise SettingError("control_image", "needs a pipeline with a controlnet (from_pretrained(.., controlnet=))")
        if arguments is None:
            raise SettingError("control_image", "is required: this pipeline has a controlnet")
        check_controlnet(net, self.family, backbone.denoiser)
        if self.family == families.FLUX and arguments.guess_mode:  # before any crop is encoded
            raise SettingError("guess_mode", "is not supported for FLUX.1 (diffusers' FluxControlNetPipeline)")
        n = n_nets(net)
        images = arguments.control_image if n > 1 else [arguments.control_image]
        if not isinstance(images, list | tuple) or len(images) != n:
            raise SettingError("control_image", f"must be a list of {n} images, one per ControlNet")
        scale = backbone.vae_scale
        corners = plan.positions(b, scale)
        rows = []
        for image in images:
            parts = image if isinstance(image, list | tuple) else [image]
            tensor = torch.cat([control_tensor(part) for part in parts])
            if tensor.shape[0] not in (1, b):
                rule = f"must hold 1 or {b} images (one per output); got {tensor.shape[0]}"
                raise SettingError("control_image", rule)
            fitted = fit_control_image(tensor, size[0] * scale, size[1] * scale).to(device, backbone.dtype)
            crops = window_crops(fitted, corners, window * scale, settings.circular_padding)
            rows.append(backbone.control_inputs(crops, net))
        steps = settings.num_inference_steps
        values = [
            _per_net(v, n, name)
            for v, name in (
                (arguments.controlnet_conditioning_scale, "controlnet_conditioning_scale"),
                (arguments.control_guidance_start, "control_guidance_start"),
                (arguments.control_guidance_end, "control_guidance_end"),
            )
        ]
        if self.family == families.FLUX:
            return FluxControl(net, *values, total=steps), rows
        pooled = any(getattr(one.config, "global_pool_conditions", False) for one in nets_of(net))
        return Control(net, *values, total=steps, guess_mode=arguments.guess_mode or pooled), rows

    @staticmethod
    def _with_control(cond: Conditioning, rows: list[torch.Tensor]) -> Conditioning:
        """``cond`` with each ControlNet's crops as conditioning rows (``controlnet_cond_K``)."""
        if not rows:
            return cond
        return Conditioning({**cond.cond, **{f"{CONTROL}_{k}": r for k, r in enumerate(rows)}}, cond.uncond)

    def _fingerprint(
        self, conds: list[Conditioning], settings: PanoramaSettings, latents: torch.Tensor, masks: torch.Tensor | None
    ) -> dict[str, bytes]:
        """What every process of a parallel run must share, by part: the model (its components' configs and
        dtype), the prompt (the conditioning tensors), the settings, the seed (the initial noise), the layout."""
        model = [f"{self.dtype}"]
        parts = {**self.components, "controlnet": getattr(self, "controlnet", None)}
        for name, component in sorted(parts.items()):
            config = getattr(component, "config", None)
            model.append(f"{name}={type(component).__name__}:{dict(config) if isinstance(config, dict) else config}")
        tensors = [v for c in conds for part in (c.cond, c.uncond or {}) for _, v in sorted(part.items())]
        return {
            "model": "\n".join(model).encode(),
            "prompt": parallel.tensor_bytes(*tensors),
            "settings": repr(settings).encode(),
            "seed (initial noise)": parallel.tensor_bytes(latents),
            "layout": parallel.tensor_bytes(masks),
        }

    def _check_memory(
        self,
        backbone: Backbone,
        settings: PanoramaSettings,
        latent: tuple[int, int],
        window: int,
        images: int,
        windows: int,
        cond: Conditioning,
        device: torch.device,
        control: bool = False,
    ) -> None:
        """OutOfMemory where the estimate (:func:`syncguide.memory.estimate`) clearly exceeds ``device``'s free
        memory; ``latent`` is the decoded canvas (wrap padding included), ``windows`` the rows per image, ``cond``
        one image's conditioning (repeated for every row), ``control`` whether a ControlNet runs."""
        denoiser = getattr(backbone, "unet", None)  # the estimate knows UNets (SD, SDXL); transformers: not yet
        decoder = getattr(backbone, "decoder", None) or getattr(backbone, "vae", None)
        if denoiser is None or decoder is None:
            return  # a backbone this estimate does not know: the out-of-memory error is still reported
        sync_rows = (settings.sync_batch_size or settings.view_batch_size) * images if settings.syncs else 0
        element = torch.finfo(backbone.dtype).bits // 8
        per_row = sum(v[0].numel() * v.element_size() for part in (cond.cond, cond.uncond or {}) for v in part.values())
        state = memory.state_bytes(latent, window, backbone.latent_channels, images, windows, element, per_row)
        need = memory.estimate(
            denoiser.config,
            decoder.config,
            latent,
            window,
            images,
            settings.view_batch_size * images,
            settings.guidance_scale > 1,
            sync_rows,
            settings.sync_checkpointing,
            element,
            control,
        )
        memory.check_fits(need, device, state)

    def _progress(self, label: str, shown: bool) -> Callable[[Any], Any]:
        """The loop's progress bar, labelled ``label``; none where not ``shown`` (ranks other than 0)."""
        return (lambda steps: self._labelled_progress(steps, label)) if shown else iter

    def _labelled_progress(self, steps: Any, label: str) -> Any:
        """diffusers' progress bar over ``steps``, labelled ``label`` unless the user's config has a ``desc``."""
        config = getattr(self, "_progress_bar_config", {})
        if "desc" in config:
            return self.progress_bar(steps)
        self._progress_bar_config = {**config, "desc": label}
        try:
            return self.progress_bar(steps)
        finally:
            self._progress_bar_config = config

    def _hooks(
        self,
        backbone: Backbone,
        settings: PanoramaSettings,
        layout: Layout | None,
        window: int,
        call: _Call,
        device: torch.device,
        b: int,
    ) -> list[StepHook]:
        """Bootstrapping (layouts with regions), sync (unless it never runs), SDG (if given), in this order."""
        hooks: list[StepHook] = []
        n_bootstrap = round(settings.bootstrap_fraction * settings.num_inference_steps)
        if layout is not None and layout.regions and n_bootstrap:
            generator = _first(call.generator)
            colours = flat_colours(backbone, n_bootstrap, window, generator, device)
            hooks.append(BootstrapHook(Bootstrap(n_bootstrap, colours, generator)))
        if settings.syncs:
            loss = call.perceptual_loss or self.default_perceptual_loss()
            options = SyncOptions(
                settings.sync_schedule(),
                loss,
                settings.sync_batch_size or settings.view_batch_size,
                settings.sync_checkpointing,
                hold_output=settings.sync_mode == "fast",
                decoder=_checked_decoder(call.sync_decoder, backbone),
                loss_size=settings.sync_loss_size,
            )
            hooks.append(SyncHook(options, None if layout is not None and settings.sync_regions else [0]))
        if call.semantic_guidance is not None:
            hooks.append(SemanticHook(call.semantic_guidance, settings.view_batch_size * b))
        return hooks

    def _initial_latents(
        self, shape: tuple, generator: Any, latents: torch.Tensor | None, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """The initial noise of the canvas ``shape`` ``(B, C, h, w)``, drawn as the family's own pipeline draws it
        (``randn_tensor`` of the unpacked latents; FLUX packs after drawing), so a seed moves between the two."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise SettingError("latents", f"must have shape {shape}; got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype)
        return latents if self.flow else latents * self.scheduler.init_noise_sigma  # flow matching starts at noise

    def _wrap_callback(self, fn: Callable[..., dict], names: Sequence[str]) -> StepCallback:
        def callback(i: int, t: torch.Tensor, latents: torch.Tensor, denoised: torch.Tensor | None) -> torch.Tensor:
            values = {"latents": latents, "denoised": denoised}
            out = fn(self, i, t, {k: values[k] for k in names})
            return (out or {}).get("latents", latents)

        return callback

    @torch.no_grad()
    def _postprocess(self, backbone: Backbone, latents: torch.Tensor, output_type: str, wrap: int) -> Any:
        if output_type == "latent":
            return latents
        images = backbone.decode(latents, wrap=wrap)
        if output_type == "pt":
            return images
        array = VaeImageProcessor.pt_to_numpy(images.float().cpu())
        return array if output_type == "np" else VaeImageProcessor.numpy_to_pil(array)


def _previewing(
    callback: StepCallback | None, call: _Call, decoder: torch.nn.Module, scale: int, wrap: int, steps: int
) -> StepCallback:
    """``callback`` (may be None) plus live previews: every ``call.preview_every`` steps and at the last, the fused
    x0 prediction decoded by ``decoder`` (the tiny sync decoder when given: cheap) goes to ``call.preview(i,
    images)`` as PIL images; the user's callback still sees ``denoised`` only if it asked for it."""

    def step(i: int, t: torch.Tensor, latents: torch.Tensor, denoised: torch.Tensor | None) -> torch.Tensor | None:
        if denoised is not None and ((i + 1) % call.preview_every == 0 or i + 1 == steps):
            with torch.no_grad():
                images = vae_decode(decoder, denoised.to(decoder.dtype), wrap, scale)
            call.preview(i, VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(images.float().cpu())))
        if callback is None:
            return None
        return callback(i, t, latents, denoised if "denoised" in call.tensor_inputs else None)

    return step


def _checked_decoder(decoder: torch.nn.Module | None, backbone: Backbone) -> torch.nn.Module | None:
    """``decoder`` if it reads ``backbone``'s latents (its ``latent_channels``); SettingError ``sync_decoder``."""
    if decoder is None:
        return None
    config = getattr(decoder, "config", None)
    channels = getattr(config, "latent_channels", None)
    if channels is None or not hasattr(decoder, "decode"):
        raise SettingError("sync_decoder", "must be a decoder with decode() and a config (e.g. AutoencoderTiny)")
    if channels != backbone.latent_channels:
        raise SettingError(
            "sync_decoder",
            f"decodes {channels}-channel latents; this model's have {backbone.latent_channels}",
        )
    return decoder


def _control_arguments(image: Any, scale: Any, start: Any, end: Any, guess: Any) -> ControlArguments | None:
    if not isinstance(guess, bool):
        raise SettingError("guess_mode", f"must be True or False; got {guess!r}")
    return None if image is None else ControlArguments(image, scale, start, end, guess)


def _per_net(value: float | list[float], n: int, name: str) -> list[float]:
    """One value for each of ``n`` ControlNets: ``value`` repeated, or the list as given (SettingError)."""
    values = list(value) if isinstance(value, list | tuple) else [value] * n
    if len(values) != n or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise SettingError(name, f"must be a number or a list of {n} numbers (one per ControlNet); got {value!r}")
    return [float(v) for v in values]


def seam_padding(window: int) -> int:
    """Latent columns of wrap padding used to decode a 360-degree panorama (a quarter window: 16 for SD)."""
    return max(1, window // 4)


def _canvas(backbone: Backbone, settings: PanoramaSettings) -> tuple[int, tuple[int, int], list[Window]]:
    """Window size, latent canvas size and windows; the default canvas is one window high and six wide."""
    window = settings.window or backbone.window
    height = settings.height or window * backbone.vae_scale
    width = settings.width or 6 * height
    size = _latent_size(height, width, backbone.vae_scale)
    return window, size, make_windows(*size, window, settings.stride, settings.circular_padding)


def _latent_size(height: int, width: int, scale: int) -> tuple[int, int]:
    if height % scale or width % scale:
        raise SettingError(
            "height" if height % scale else "width", f"must be a multiple of {scale}; got {height} x {width}"
        )
    return height // scale, width // scale


def _negatives(negative: str | list[str] | None, n_prompts: int, per_prompt: int) -> list[str]:
    negatives = [negative or ""] * n_prompts if not isinstance(negative, list) else negative
    if len(negatives) != n_prompts:
        raise SettingError("negative_prompt", f"must have one entry per prompt ({n_prompts}); got {len(negatives)}")
    return [n for n in negatives for _ in range(per_prompt)]


def _first(generator: Any) -> torch.Generator | None:
    return generator[0] if isinstance(generator, list) else generator


@contextlib.contextmanager
def _reporting_out_of_memory(device: torch.device) -> Iterator[None]:
    """Turn an out-of-memory error of torch (CUDA, MPS, the CPU allocator) into :class:`OutOfMemory`."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as error:
        if isinstance(error, OutOfMemory):
            raise
        raise OutOfMemory(None, str(device)) from None
    except RuntimeError as error:  # the CPU allocator and MPS raise plain RuntimeErrors
        text = str(error)
        if "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text:
            raise OutOfMemory(None, str(device)) from None
        raise


def _label(settings: PanoramaSettings, layout: Layout | None) -> str:
    """The progress bar's label: what is being denoised and how (``panorama (SyncDiffusion)``)."""
    method = "SyncDiffusion" if settings.syncs else "MultiDiffusion"
    return f"{'layout' if layout is not None else 'panorama'} ({method})"


SyncDiffusionPipeline.family_classes[families.SD] = SyncDiffusionPipeline


def _saved_controlnet(pretrained: Any, dtype: torch.dtype | None) -> torch.nn.Module | None:
    """The ControlNet a local pipeline directory was saved with (its model_index.json's ``controlnet`` entry and
    folder), loaded as its class; None without one. diffusers itself hands an optional parameter's entry over
    unloaded."""
    index = Path(str(pretrained)) / "model_index.json"
    try:
        entry = json.loads(index.read_text(encoding="utf-8")).get("controlnet")
    except (OSError, ValueError):
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "diffusers" and isinstance(entry[1], str)):
        return None
    import diffusers  # the class the file names

    options = {"torch_dtype": dtype} if dtype else {}
    folders = [index.parent / "controlnet"]
    while (index.parent / f"controlnet_{len(folders)}").is_dir():
        folders.append(index.parent / f"controlnet_{len(folders)}")
    if entry[1] in ("MultiControlNetModel", "FluxMultiControlNetModel"):
        single = diffusers.FluxControlNetModel if entry[1].startswith("Flux") else diffusers.ControlNetModel
        return as_multi([single.from_pretrained(folder, **options) for folder in folders])
    kind = getattr(diffusers, entry[1], None)
    if kind is None:
        raise SettingError("model", f"{pretrained} was saved with a {entry[1]}, which diffusers does not have")
    return kind.from_pretrained(folders[0], **options)


def family_of(pretrained: Any, kwargs: dict[str, Any]) -> str:
    """The family of the checkpoint ``pretrained`` (a directory or hub id) from its ``model_index.json``;
    SettingError ``model`` for an unsupported one, naming its class and the supported list."""
    config = DiffusionPipeline.load_config(
        pretrained, **{k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
    )
    family = families.family_of_index(dict(config))
    if family is None:
        name = config.get("_class_name", "pipeline")
        raise SettingError("model", f"{pretrained} is a {name}; supported: {families.SUPPORTED}")
    return family


def pipeline_class(family: str | None, name: str = "pipeline") -> type[SyncDiffusionPipeline]:
    """The pipeline class of ``family``; SettingError ``model`` for None (an unsupported ``name``)."""
    if family is None:
        raise SettingError("model", f"a {name} is not supported; supported: {families.SUPPORTED}")
    return SyncDiffusionPipeline.family_classes[family]
