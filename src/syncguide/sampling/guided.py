"""Sampling of unconditional pixel-space models (UNet2DModel) with semantic guidance applied at each step.

Where the gradient goes is the sampler's business (as ``condition_mean`` / ``condition_score`` in OpenAI's
guided-diffusion): an ancestral DDPM step shifts its mean by Sigma * grad F; every other scheduler (DDIM and the
multistep ones) steps a noise prediction shifted to eps - sqrt(1 - abar_t) * grad F. The gradient is taken with
respect to x_t through the guidance encoder only: there is no backward pass through the UNet. With no active
guidance the loop is exactly diffusers' ``DDPMPipeline`` / ``DDIMPipeline`` loop (same random draws).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.guidance.semantic import Guidance, guidance_gradient
from syncguide.schedulers import shift_score, step_arguments, step_variance

__all__ = ["apply_guidance", "sample_unconditional"]


def apply_guidance(
    scheduler: SchedulerMixin,
    model_output: torch.Tensor,
    sample: torch.Tensor,
    t: torch.Tensor,
    grad: torch.Tensor | None,
    step_kwargs: dict,
    prev_t: int,
) -> torch.Tensor:
    """One scheduler step from ``sample`` x_t with the guidance gradient ``grad`` applied; returns x_{t-1}.

    DDPM: ``step(...) + Sigma_t * grad`` (Sigma from ``alphas_cumprod``); others: ``step`` of the shifted score.
    """
    if grad is None:
        return scheduler.step(model_output, t, sample, return_dict=False, **step_kwargs)[0]
    if isinstance(scheduler, DDPMScheduler):
        prev = scheduler.step(model_output, t, sample, return_dict=False, **step_kwargs)[0]
        sigma = step_variance(scheduler, int(t), prev_t)
        return (prev.float() + sigma * grad).to(prev.dtype)
    shifted = shift_score(scheduler, model_output, grad, t)
    return scheduler.step(shifted, t, sample, return_dict=False, **step_kwargs)[0]


def sample_unconditional(
    unet: torch.nn.Module,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    guidance: Guidance | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    **step_options,
) -> torch.Tensor:
    """Denoise ``latents`` ``(B, C, H, W)`` (initial noise) over ``scheduler.timesteps`` (set beforehand).

    ``guidance`` objectives see x_t in model space with the true training timestep (respaced runs included).
    ``step_options`` go to ``scheduler.step`` when it accepts them (``eta``, ``use_clipped_model_output``).
    Returns x_0 ``(B, C, H, W)`` in model space (about [-1, 1]).
    """
    step_kwargs = step_arguments(scheduler, generator, **step_options)
    timesteps = scheduler.timesteps
    n = len(timesteps)
    x = latents
    for i, t in enumerate(progress(timesteps)):
        with torch.no_grad():
            out = unet(scheduler.scale_model_input(x, t), t).sample
        grad = guidance_gradient(guidance, x, t.reshape(1).expand(x.shape[0]), i, n)
        prev_t = int(timesteps[i + 1]) if i + 1 < n else -1
        x = apply_guidance(scheduler, out, x, t, grad, step_kwargs, prev_t)
    return x
