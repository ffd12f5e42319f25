"""Sampling of unconditional pixel-space models (UNet2DModel) with semantic guidance applied at each step.

Where the gradient goes is the sampler's business (as ``condition_mean`` / ``condition_score`` in OpenAI's
guided-diffusion): an ancestral DDPM step shifts its mean by Sigma * grad F, Sigma the step's variance (the
model's own, Sigma_theta, for a learned-variance model); every other scheduler (DDIM and the multistep ones) steps
a noise prediction shifted to eps - sqrt(1 - abar_t) * grad F. The gradient is taken with respect to x_t through
the guidance encoder only: there is no backward pass through the UNet. With no active guidance the loop is
exactly diffusers' ``DDPMPipeline`` / ``DDIMPipeline`` loop (same random draws).

Learned-variance models (``out_channels = 2 * in_channels``, OpenAI's ADM): DDPM steps the whole output (diffusers
splits it); the other schedulers step the noise-prediction half only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.errors import NonFiniteError
from syncguide.guidance.semantic import Guidance, guidance_gradient
from syncguide.schedulers import (
    check_variance,
    predict_x0,
    shift_score,
    split_output,
    step_arguments,
    step_variance,
)

__all__ = ["StepEnd", "guided_step", "sample_unconditional"]

# on_step_end(i, t, tensors) -> tensors: ``tensors`` holds the requested of "latents" (x_{t-1}) and "denoised"
# (the x0 prediction at t); a returned "latents" replaces x_{t-1}.
StepEnd = Callable[[int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def guided_step(
    scheduler: SchedulerMixin,
    model_output: torch.Tensor,
    sample: torch.Tensor,
    t: torch.Tensor,
    grad: torch.Tensor | None,
    step_kwargs: dict,
    prev_t: int,
) -> torch.Tensor:
    """One scheduler step from ``sample`` x_t ``(B, C, H, W)`` with the guidance gradient ``grad`` applied.

    ``model_output`` is ``(B, C, H, W)`` or ``(B, 2C, H, W)`` (prediction, then predicted variance). DDPM:
    ``step(...) + variance * grad`` (the variance from ``alphas_cumprod``, or the model's for a learned variance);
    others: ``step`` of the shifted score. Returns x_{t-1} ``(B, C, H, W)``. ValueError (before stepping) when
    the output's channels do not fit the scheduler's ``variance_type`` (:func:`~syncguide.schedulers.check_variance`).
    """
    check_variance(scheduler, sample.shape[1], model_output.shape[1])
    if isinstance(scheduler, DDPMScheduler):
        prev = scheduler.step(model_output, t, sample, return_dict=False, **step_kwargs)[0]
        if grad is None:
            return prev
        variance = step_variance(scheduler, int(t), prev_t, split_output(model_output, sample)[1])
        return (prev.float() + variance * grad).to(prev.dtype)
    prediction = split_output(model_output, sample)[0]
    if grad is not None:
        prediction = shift_score(scheduler, prediction, grad, t)
    return scheduler.step(prediction, t, sample, return_dict=False, **step_kwargs)[0]


def sample_unconditional(
    unet: torch.nn.Module,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    guidance: Guidance | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    on_step_end: StepEnd | None = None,
    step_end_inputs: Sequence[str] = ("latents",),
    **step_options,
) -> torch.Tensor:
    """Denoise ``latents`` ``(B, C, H, W)`` (initial noise) over ``scheduler.timesteps`` (set beforehand).

    ``guidance`` objectives see x_t in model space with the true training timestep (respaced runs included).
    ``on_step_end`` (see :data:`StepEnd`) is called after each step with the tensors named in ``step_end_inputs``.
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
        new = guided_step(scheduler, out, x, t, grad, step_kwargs, prev_t)
        if not torch.isfinite(new).all():
            raise NonFiniteError(i, n)
        if on_step_end is not None:
            new = _step_end(on_step_end, step_end_inputs, i, t, new, (scheduler, x, out))
        x = new
    return x


def _step_end(
    on_step_end: StepEnd,
    names: Sequence[str],
    i: int,
    t: torch.Tensor,
    latents: torch.Tensor,
    state: tuple[SchedulerMixin, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Call ``on_step_end`` with the named tensors; returns the (possibly replaced) latents x_{t-1}.

    ``state`` is ``(scheduler, x_t, model output)``: "denoised" (x0 prediction ``(B, C, H, W)``) is computed from
    it only when asked for.
    """
    scheduler, x, out = state
    tensors = {}
    for name in names:
        tensors[name] = latents if name == "latents" else predict_x0(scheduler, x, split_output(out, x)[0], t)
    returned = on_step_end(i, t, tensors) or {}
    return returned.get("latents", latents)
