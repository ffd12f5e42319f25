"""``SyncDiffusionPipeline``: MultiDiffusion and SyncDiffusion panoramas on any Stable Diffusion 1.x/2.x model.

Loads like any diffusers pipeline (``from_pretrained(hub_id_or_dir)``, ``from_pipe(sd_pipeline)``) and takes
diffusers' usual ``__call__`` arguments plus the window and sync parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from syncguide.guidance.perceptual import PerceptualLoss, lpips_vgg
from syncguide.guidance.semantic import Guidance
from syncguide.guidance.sync import SyncSchedule
from syncguide.layout import Layout
from syncguide.models.sd import LatentDiffusion
from syncguide.sampling.joint import SyncOptions, sample_joint
from syncguide.sampling.regions import Bootstrap, flat_colours, sample_regions
from syncguide.schedulers import check_scheduler, make_scheduler
from syncguide.tiling import Window, make_windows


@dataclass
class PanoramaOutput(BaseOutput):
    """``images``: a list of PIL images, a ``(B, H, W, 3)`` array or a ``(B, 3, H, W)`` tensor in [0, 1], or
    latents ``(B, 4, H/8, W/8)`` for ``output_type="latent"``."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class SyncDiffusionPipeline(DiffusionPipeline):
    """Wide images from a text prompt by joint diffusion of overlapping windows, optionally synchronised.

    With ``sync_weight=0`` (or ``sync_steps=0``) this is MultiDiffusion exactly.

    References:
        Bar-Tal et al., "MultiDiffusion", ICML 2023; Lee et al., "SyncDiffusion", NeurIPS 2023.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: Any,
    ) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self._default_loss: PerceptualLoss | None = None

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> SyncDiffusionPipeline:
        """Load like ``DiffusionPipeline.from_pretrained``; the scheduler becomes DDIM (the papers') with the
        checkpoint's noise schedule, unless a ``scheduler=`` is passed."""
        pipe = super().from_pretrained(*args, **kwargs)
        if "scheduler" not in kwargs:
            pipe.set_scheduler("ddim")
        return pipe

    @property
    def model(self) -> LatentDiffusion:
        """The components seen through the project's model adapter."""
        return LatentDiffusion(self.vae, self.text_encoder, self.tokenizer, self.unet)

    def set_scheduler(self, name: str) -> None:
        """Replace the scheduler by ``name`` (ddim, ddpm, dpm++, unipc, pndm), keeping its noise schedule."""
        self.scheduler = make_scheduler(name, self.scheduler.config)

    def default_perceptual_loss(self) -> PerceptualLoss:
        """LPIPS-VGG on this pipeline's device, built on first use."""
        if self._default_loss is None:
            self._default_loss = lpips_vgg(self._execution_device)
        return self._default_loss

    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        stride: int = 16,
        view_batch_size: int = 1,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        circular: bool = False,
        window: int | None = None,
        sync_weight: float = 20.0,
        sync_decay: float = 0.95,
        sync_steps: int | None = None,
        sync_every: int = 1,
        sync_batch_size: int | None = None,
        sync_checkpointing: bool = False,
        perceptual_loss: PerceptualLoss | None = None,
        semantic_guidance: Guidance | None = None,
    ) -> PanoramaOutput | tuple:
        """Generate panoramas.

        Args:
            prompt, negative_prompt: one text or a list (one panorama per prompt).
            height, width: output size in pixels, multiples of 8 and at least one window; default one window
                high and six wide (512 x 3072 for SD 2-base, the paper's setting).
            stride: window offset in latent pixels (the paper: 16 = 128 px).
            view_batch_size: windows per UNet call.
            latents: initial noise ``(B, 4, height/8, width/8)``; used exactly as given.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            callback_on_step_end: ``f(pipe, i, t, {"latents": ...}) -> dict`` (diffusers' convention).
            circular: 360-degree horizontal wrap (seamless left-right join).
            window: window size in latent pixels; default the UNet's ``sample_size``.
            sync_weight, sync_decay, sync_steps, sync_every: SyncDiffusion's w0, decay, number of synced steps
                (default all) and period. ``sync_weight=0`` gives MultiDiffusion.
            sync_batch_size: windows per gradient pass (default ``view_batch_size``).
            sync_checkpointing: gradient checkpointing in the sync pass (less memory, ~1 more forward).
            perceptual_loss: distance ``(a, b) -> (B,)`` on [-1, 1] images; default LPIPS-VGG.
            semantic_guidance: SDG guidance (:mod:`syncguide.guidance.semantic`) applied to every window through
                its decoded x0 prediction, e.g. a :class:`~syncguide.guidance.semantic.StyleGuidance` for "a
                panorama of PROMPT in the style of REF"; composes with sync.
        Returns:
            :class:`PanoramaOutput` (or a 1-tuple if ``return_dict=False``).
        """
        check_scheduler(self.scheduler)
        model = self.model
        window, size, windows = _canvas(model, height, width, window, stride, circular)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = _negatives(negative_prompt, len(prompts) // num_images_per_prompt, num_images_per_prompt)
        device = self._execution_device
        embeds = model.encode_prompt(prompts, negatives if guidance_scale > 1 else None)
        shape = (len(prompts), self.unet.config.in_channels, *size)
        latents = self._initial_latents(shape, generator, latents, device)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        schedule = SyncSchedule(sync_weight, sync_decay, sync_steps, sync_every)
        sync = self._sync_options(schedule, perceptual_loss, sync_batch_size or view_batch_size, sync_checkpointing)
        callback = None
        if callback_on_step_end is not None:
            callback = self._wrap_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents = sample_joint(
            model,
            self.scheduler,
            latents,
            windows,
            embeds,
            guidance_scale,
            view_batch_size,
            sync,
            callback,
            progress=lambda steps: self.progress_bar(steps),
            generator=_first(generator),
            semantic=semantic_guidance,
        )
        images = self._postprocess(model, latents, output_type, seam_padding(window) if circular else 0)
        self.maybe_free_model_hooks()
        return PanoramaOutput(images=images) if return_dict else (images,)

    def layout(
        self,
        layout: Layout,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        stride: int = 16,
        view_batch_size: int = 1,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        circular: bool = False,
        window: int | None = None,
        bootstrap_fraction: float = 0.2,
        sync_weight: float = 20.0,
        sync_decay: float = 0.95,
        sync_steps: int | None = None,
        sync_every: int = 1,
        sync_batch_size: int | None = None,
        sync_checkpointing: bool = False,
        sync_regions: bool = False,
        perceptual_loss: PerceptualLoss | None = None,
    ) -> PanoramaOutput | tuple:
        """Generate images from a layout: a background prompt plus (prompt, mask) regions (region MultiDiffusion).

        Each prompt is denoised on every window its mask touches and fused with its mask (resized to the latent
        grid, binarised) as weight; the background takes the pixels no region covers; overlapping regions are
        averaged. The arguments shared with :meth:`__call__` mean the same; further:

        Args:
            layout: :class:`~syncguide.layout.Layout` (``Layout("a summer landscape", (Region("snow",
                box=(0.25, 0, 0.75, 1)),))``). A region covering no latent pixel raises ValueError.
            negative_prompt: one text, used for every prompt of the layout.
            num_images_per_prompt: images of the layout, B.
            latents: initial noise ``(B, 4, height/8, width/8)``; used exactly as given.
            bootstrap_fraction: in [0, 1]; during the first ``round(fraction * steps)`` steps each region's windows
                show a noised flat random colour outside its mask (MultiDiffusion's bootstrapping; default 20%).
            sync_weight, sync_decay, sync_steps, sync_every: SyncDiffusion pulling the background's windows
                towards its anchor (the centre window among those it touches). ``sync_weight=0`` gives region
                MultiDiffusion bit for bit.
            sync_regions: also pull each region's windows towards that region's own anchor.
        Returns:
            :class:`PanoramaOutput` (or a 1-tuple if ``return_dict=False``).
        """
        if not 0 <= bootstrap_fraction <= 1:
            raise ValueError(f"bootstrap_fraction must be in [0, 1]; got {bootstrap_fraction}")
        check_scheduler(self.scheduler)
        model, device = self.model, self._execution_device
        window, size, windows = _canvas(model, height, width, window, stride, circular)
        masks = layout.masks(*size)
        negatives = [negative_prompt or ""] * num_images_per_prompt if guidance_scale > 1 else None
        embeds = [model.encode_prompt([p] * num_images_per_prompt, negatives) for p in layout.prompts]
        shape = (num_images_per_prompt, self.unet.config.in_channels, *size)
        latents = self._initial_latents(shape, generator, latents, device)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        schedule = SyncSchedule(sync_weight, sync_decay, sync_steps, sync_every)
        sync = self._sync_options(schedule, perceptual_loss, sync_batch_size or view_batch_size, sync_checkpointing)
        n_bootstrap = round(bootstrap_fraction * num_inference_steps)
        bootstrap = None
        if n_bootstrap and layout.regions:
            colours = flat_colours(model, n_bootstrap, window, _first(generator), device)
            bootstrap = Bootstrap(n_bootstrap, colours, _first(generator))
        callback = None
        if callback_on_step_end is not None:
            callback = self._wrap_callback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents = sample_regions(
            model,
            self.scheduler,
            latents,
            windows,
            embeds,
            masks,
            guidance_scale,
            view_batch_size,
            bootstrap,
            sync,
            sync_regions,
            callback,
            progress=lambda steps: self.progress_bar(steps),
            generator=_first(generator),
        )
        images = self._postprocess(model, latents, output_type, seam_padding(window) if circular else 0)
        self.maybe_free_model_hooks()
        return PanoramaOutput(images=images) if return_dict else (images,)

    def _sync_options(
        self, schedule: SyncSchedule, loss: PerceptualLoss | None, batch_size: int, checkpointing: bool
    ) -> SyncOptions | None:
        """Sync settings, or None when the schedule never syncs (then no perceptual loss is built)."""
        if schedule.weight == 0 or schedule.steps == 0:
            return None
        return SyncOptions(schedule, loss or self.default_perceptual_loss(), batch_size, checkpointing)

    def _initial_latents(
        self, shape: tuple, generator: Any, latents: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor:
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}; got {tuple(latents.shape)}")
        return latents.to(device=device, dtype=self.unet.dtype) * self.scheduler.init_noise_sigma

    def _wrap_callback(self, fn: Callable[..., dict], names: Sequence[str]) -> Callable:
        def callback(i: int, t: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
            values = {"latents": latents}
            out = fn(self, i, t, {k: values[k] for k in names})
            return (out or {}).get("latents", latents)

        return callback

    @torch.no_grad()
    def _postprocess(self, model: LatentDiffusion, latents: torch.Tensor, output_type: str, wrap: int) -> Any:
        if output_type == "latent":
            return latents
        images = model.decode(latents, wrap=wrap).float().cpu()
        if output_type == "pt":
            return images
        array = VaeImageProcessor.pt_to_numpy(images)
        if output_type == "np":
            return array
        if output_type == "pil":
            return VaeImageProcessor.numpy_to_pil(array)
        raise ValueError(f"output_type must be pil, np, pt or latent; got {output_type!r}")


def seam_padding(window: int) -> int:
    """Latent columns of wrap padding used to decode a 360-degree panorama (a quarter window: 16 for SD)."""
    return max(1, window // 4)


def _canvas(
    model: LatentDiffusion, height: int | None, width: int | None, window: int | None, stride: int, circular: bool
) -> tuple[int, tuple[int, int], list[Window]]:
    """Window size, latent canvas size and windows; the default canvas is one window high and six wide."""
    window = window or model.window
    height = height or window * model.vae_scale
    width = width or 6 * height
    size = _latent_size(height, width, model.vae_scale)
    return window, size, make_windows(*size, window, stride, circular)


def _latent_size(height: int, width: int, scale: int) -> tuple[int, int]:
    if height % scale or width % scale:
        raise ValueError(f"height and width must be multiples of {scale}; got {height} x {width}")
    return height // scale, width // scale


def _negatives(negative: str | list[str] | None, n_prompts: int, per_prompt: int) -> list[str]:
    negatives = [negative or ""] * n_prompts if not isinstance(negative, list) else negative
    if len(negatives) != n_prompts:
        raise ValueError(f"negative_prompt must have one entry per prompt ({n_prompts}); got {len(negatives)}")
    return [n for n in negatives for _ in range(per_prompt)]


def _first(generator: Any) -> torch.Generator | None:
    return generator[0] if isinstance(generator, list) else generator
