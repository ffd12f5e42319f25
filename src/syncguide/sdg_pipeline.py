"""``SemanticGuidancePipeline``: an unconditional pixel-space diffusion model steered by semantic guidance (SDG).

Loads any diffusers ``UNet2DModel`` + DDPM/DDIM checkpoint (``google/ddpm-ema-church-256``, the demo DDPM, an ADM
port with a learned variance) with ``from_pretrained``; ``semantic_guidance`` is one of the objects of
:mod:`syncguide.guidance.semantic`. Arguments follow diffusers' conventions (``DDPMPipeline``: ``batch_size``
positional, the rest keyword-only; ``output_type``, ``return_dict``, ``callback_on_step_end``).

References:
    Liu et al., "More Control for Free! Image Synthesis with Semantic Diffusion Guidance", WACV 2023.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from syncguide.guidance.semantic import Guidance
from syncguide.sampling.guided import sample_unconditional
from syncguide.schedulers import check_variance

OUTPUT_TYPES = ("pil", "np", "pt")


class SemanticGuidancePipeline(DiffusionPipeline):
    """Samples of an unconditional ``UNet2DModel`` with DDPM (mean shift) or DDIM (score shift) guidance."""

    _callback_tensor_inputs: ClassVar[list[str]] = ["latents", "denoised"]

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler) -> None:
        super().__init__()
        if not isinstance(scheduler, DDPMScheduler | DDIMScheduler):
            raise ValueError(f"scheduler must be a DDPMScheduler or DDIMScheduler; got {type(scheduler).__name__}")
        self.register_modules(unet=unet, scheduler=scheduler)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> SemanticGuidancePipeline:
        """Load a diffusers ``UNet2DModel`` pipeline (hub id or directory), as ``DiffusionPipeline.from_pretrained``.

        The default scheduler is the checkpoint's own (its ``scheduler/`` folder): a ``DDPMScheduler`` for the
        google/ddpm-ema-* models and the demo DDPM, so guidance is the DDPM mean shift. Pass
        ``scheduler=DDIMScheduler.from_pretrained(path, subfolder="scheduler")`` (or replace ``pipe.scheduler``
        with ``DDIMScheduler.from_config(pipe.scheduler.config)``) for DDIM and the score shift.
        """
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule abar_t ``(T,)`` (what guidance uses to noise references)."""
        return self.scheduler.alphas_cumprod

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        *,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 100,
        semantic_guidance: Guidance | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        guidance: Guidance | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Sample ``batch_size`` images.

        Args:
            semantic_guidance: the semantic guidance (None: plain sampling, the same draws as diffusers'
                DDPM/DDIM pipelines). ``guidance`` is its deprecated former name (FutureWarning).
            eta, use_clipped_model_output: DDIM options (ignored by DDPM); ``eta`` in [0, 1] scales DDIM's noise.
            latents: initial noise ``(B, C, H, W)`` used as given; else drawn from ``generator``.
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` float32 in [0, 1]) or ``"pt"`` (``(B, C, H, W)`` in
                [0, 1], on the sample's device, in its dtype).
            return_dict: False returns ``(images,)``.
            callback_on_step_end: ``f(pipe, i, t, callback_kwargs) -> dict`` after each step; ``callback_kwargs``
                holds the tensors named in ``callback_on_step_end_tensor_inputs`` (of ``_callback_tensor_inputs``:
                ``latents`` x_{t-1}, ``denoised`` the x0 prediction at t, both ``(B, C, H, W)``); a returned
                ``latents`` replaces them.
        """
        semantic_guidance = _guidance_argument(semantic_guidance, guidance)
        self._check_call(batch_size, num_inference_steps, output_type, callback_on_step_end_tensor_inputs)
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, *size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        options: dict[str, Any] = {"eta": eta, "use_clipped_model_output": use_clipped_model_output}
        on_step_end = None
        if callback_on_step_end is not None:

            def on_step_end(i: int, t: torch.Tensor, tensors: dict) -> dict:
                return callback_on_step_end(self, i, t, tensors)

        x = sample_unconditional(
            self.unet, self.scheduler, latents, semantic_guidance, generator, self.progress_bar,
            on_step_end, tuple(callback_on_step_end_tensor_inputs), **options,
        )  # fmt: skip
        out = _to_output(x, output_type, self.numpy_to_pil)
        return ImagePipelineOutput(images=out) if return_dict else (out,)

    def _check_call(self, batch_size: int, steps: int, output_type: str, tensor_inputs: Sequence[str]) -> None:
        """ValueError for a bad argument or a UNet output that does not fit the scheduler, before any work."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {steps}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be pil, np or pt; got {output_type!r}")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            known = ", ".join(self._callback_tensor_inputs)
            raise ValueError(f"callback_on_step_end_tensor_inputs must be among {known}; got {unknown}")
        check_variance(self.scheduler, self.unet.config.in_channels, self.unet.config.out_channels)


def _guidance_argument(semantic_guidance: Guidance | None, guidance: Guidance | None) -> Guidance | None:
    """``semantic_guidance``, or the deprecated ``guidance`` (with a FutureWarning); both given is an error."""
    if guidance is None:
        return semantic_guidance
    warnings.warn(
        "SemanticGuidancePipeline(guidance=...) is deprecated; use semantic_guidance=...", FutureWarning, stacklevel=4
    )
    if semantic_guidance is not None:
        raise ValueError("give semantic_guidance or its deprecated alias guidance, not both")
    return guidance


def _to_output(x: torch.Tensor, output_type: str, to_pil: Callable) -> Any:
    """Model-space samples ``(B, C, H, W)`` in about [-1, 1] as images in [0, 1] of ``output_type``."""
    if output_type == "pt":
        return (x / 2 + 0.5).clamp(0, 1)
    images = (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return to_pil(images) if output_type == "pil" else images
