"""``SemanticGuidancePipeline``: an unconditional pixel-space diffusion model steered by semantic guidance (SDG).

Loads any diffusers ``UNet2DModel`` + DDPM/DDIM checkpoint (``google/ddpm-ema-church-256``, the demo DDPM) with
``from_pretrained``; ``guidance`` is one of the objects of :mod:`syncguide.guidance.semantic`.

References:
    Liu et al., "More Control for Free! Image Synthesis with Semantic Diffusion Guidance", WACV 2023.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from syncguide.guidance.semantic import Guidance
from syncguide.sampling.guided import sample_unconditional


class SemanticGuidancePipeline(DiffusionPipeline):
    """Samples of an unconditional ``UNet2DModel`` with DDPM (mean shift) or DDIM (score shift) guidance."""

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler) -> None:
        super().__init__()
        if not isinstance(scheduler, DDPMScheduler | DDIMScheduler):
            raise ValueError(f"scheduler must be a DDPMScheduler or DDIMScheduler; got {type(scheduler).__name__}")
        self.register_modules(unet=unet, scheduler=scheduler)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule abar_t ``(T,)`` (what guidance uses to noise references)."""
        return self.scheduler.alphas_cumprod

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 100,
        guidance: Guidance | None = None,
        eta: float = 0.0,
        use_clipped_model_output: bool | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample ``batch_size`` images.

        Args:
            guidance: the semantic guidance (None: plain sampling, the same draws as diffusers' DDPM/DDIM
                pipelines).
            eta, use_clipped_model_output: DDIM options (ignored by DDPM).
            latents: initial noise ``(B, C, H, W)`` used as given; else drawn from ``generator``.
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` in [0, 1]) or ``"pt"`` (``(B, C, H, W)`` in [0, 1]).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, *size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        options: dict[str, Any] = {"eta": eta, "use_clipped_model_output": use_clipped_model_output}
        x = sample_unconditional(self.unet, self.scheduler, latents, guidance, generator, self.progress_bar, **options)
        images = (x.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            out: Any = images
        elif output_type in ("np", "pil"):
            out = images.permute(0, 2, 3, 1).cpu().numpy()
            out = self.numpy_to_pil(out) if output_type == "pil" else out
        else:
            raise ValueError(f"output_type must be pil, np or pt; got {output_type!r}")
        return ImagePipelineOutput(images=out) if return_dict else (out,)
