"""``SemanticGuidancePipeline``: an unconditional pixel-space diffusion model steered by semantic guidance (SDG).

Loads any diffusers ``UNet2DModel`` + DDPM/DDIM checkpoint (``google/ddpm-ema-church-256``, the demo DDPM, an ADM
port with a learned variance) with ``from_pretrained``; ``semantic_guidance`` is one of the objects of
:mod:`syncguide.guidance.semantic`. Arguments follow diffusers' conventions (``DDPMPipeline``: ``batch_size``
positional, the rest keyword-only; ``output_type``, ``return_dict``, ``callback_on_step_end``; ``generator`` a
list of one generator per sample).

Per-sample generators (:func:`sample_generators`) make a sample independent of its batch: its initial noise, the
fresh noise of every DDPM (or DDIM ``eta > 0``) step and the noise of content/style guidance's reference all come
from its own generator, so sample ``(seed, index)`` is the same whatever the batch size, and can be made alone.

References:
    Liu et al., "More Control for Free! Image Synthesis with Semantic Diffusion Guidance", WACV 2023.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from syncguide.errors import SettingError
from syncguide.guidance.semantic import Guidance, MultiGuidance, ReferenceGuidance
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
        generator: torch.Generator | list[torch.Generator] | None = None,
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
            generator: one generator for the batch, or a list of ``batch_size`` (one per sample: each sample's
                initial noise, step noise and content/style reference noise come from its own, so it does not
                depend on its batch; :func:`sample_generators`).
            semantic_guidance: the semantic guidance (None: plain sampling, the same draws as diffusers'
                DDPM/DDIM pipelines). ``guidance`` is its deprecated former name (FutureWarning).
            eta, use_clipped_model_output: DDIM options (ignored by DDPM); ``eta`` >= 0 scales DDIM's fresh noise
                (0: deterministic, 1: the DDPM posterior's variance).
            latents: initial noise ``(batch_size, C, H, W)`` (the UNet's channels and sample size) used as given;
                else drawn from ``generator``.
            output_type: ``"pil"``, ``"np"`` (``(B, H, W, C)`` float32 in [0, 1]) or ``"pt"`` (``(B, C, H, W)`` in
                [0, 1], on the sample's device, in its dtype).
            return_dict: False returns ``(images,)``.
            callback_on_step_end: ``f(pipe, i, t, callback_kwargs) -> dict`` after each step; ``callback_kwargs``
                holds the tensors named in ``callback_on_step_end_tensor_inputs`` (of ``_callback_tensor_inputs``:
                ``latents`` x_{t-1}, ``denoised`` the x0 prediction at t, both ``(B, C, H, W)``); a returned
                ``latents`` replaces them.

        Raises:
            SettingError: a bad argument (named by ``setting``), before any work.
            ValueError: a UNet output that does not fit the scheduler's ``variance_type``, before any work.
        """
        semantic_guidance = _guidance_argument(semantic_guidance, guidance)
        shape = self._check_call(
            batch_size, num_inference_steps, eta, latents, output_type, callback_on_step_end_tensor_inputs
        )
        if isinstance(generator, list | tuple):
            if len(generator) != batch_size:
                rule = f"must be one generator or a list of batch_size ({batch_size}); got a list of {len(generator)}"
                raise SettingError("generator", rule)
            generator = list(generator)
            semantic_guidance = per_sample_reference_noise(semantic_guidance, generator)
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

    def _check_call(
        self,
        batch_size: int,
        steps: int,
        eta: float,
        latents: torch.Tensor | None,
        output_type: str,
        tensor_inputs: Sequence[str],
    ) -> tuple[int, ...]:
        """The initial noise's shape ``(batch_size, C, H, W)``; before any work, SettingError for a bad argument and
        ValueError for a UNet output that does not fit the scheduler's ``variance_type``."""
        _check_count("batch_size", batch_size)
        _check_count("num_inference_steps", steps)
        if not eta >= 0:
            raise SettingError("eta", f"must be >= 0; got {eta}")
        if output_type not in OUTPUT_TYPES:
            raise SettingError("output_type", f"must be one of {', '.join(OUTPUT_TYPES)}; got {output_type!r}")
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            known = ", ".join(self._callback_tensor_inputs)
            raise SettingError("callback_on_step_end_tensor_inputs", f"must be among {known}; got {unknown[0]!r}")
        config = self.unet.config
        size = (config.sample_size,) * 2 if isinstance(config.sample_size, int) else tuple(config.sample_size)
        shape = (batch_size, config.in_channels, *size)
        if latents is not None and tuple(latents.shape) != shape:
            rule = f"must have shape {shape} (batch_size, in_channels, sample size); got {tuple(latents.shape)}"
            raise SettingError("latents", rule)
        check_variance(self.scheduler, config.in_channels, config.out_channels)
        return shape


def sample_generators(seed: int, indices: Iterable[int]) -> list[torch.Generator]:
    """One CPU generator per sample ``(seed, index)``, seeded from ``numpy.random.SeedSequence([seed, index])``:
    pass them as ``generator=`` to draw every sample of a batch independently of the others."""
    return [
        torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]))
        for index in indices
    ]


def per_sample_reference_noise(guidance: Guidance | None, generators: Sequence[torch.Generator]) -> Guidance | None:
    """``guidance`` with each content / style part drawing sample k's reference noise from ``generators[k]`` (a
    copy; the other parts are shared, unchanged)."""
    if isinstance(guidance, MultiGuidance):
        return dataclasses.replace(guidance, parts=[per_sample_reference_noise(p, generators) for p in guidance.parts])
    if isinstance(guidance, ReferenceGuidance):
        return dataclasses.replace(guidance, generator=list(generators))
    return guidance


def _check_count(setting: str, value: Any) -> None:
    """SettingError unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingError(setting, f"must be an integer >= 1; got {value!r}")


def _guidance_argument(semantic_guidance: Guidance | None, guidance: Guidance | None) -> Guidance | None:
    """``semantic_guidance``, or the deprecated ``guidance`` (with a FutureWarning); both given is an error."""
    if guidance is None:
        return semantic_guidance
    warnings.warn(
        "SemanticGuidancePipeline(guidance=...) is deprecated; use semantic_guidance=...", FutureWarning, stacklevel=4
    )
    if semantic_guidance is not None:
        raise SettingError("semantic_guidance", "must not come with its deprecated alias guidance: give one, not both")
    return guidance


def _to_output(x: torch.Tensor, output_type: str, to_pil: Callable) -> Any:
    """Model-space samples ``(B, C, H, W)`` in about [-1, 1] as images in [0, 1] of ``output_type``."""
    if output_type == "pt":
        return (x / 2 + 0.5).clamp(0, 1)
    images = (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return to_pil(images) if output_type == "pil" else images
