"""Joint diffusion over windows of a large latent canvas: MultiDiffusion, plus SyncDiffusion's sync step.

All windows are stepped together through *one* scheduler call on the stack of windows. Every scheduler update
acts row by row, so a multistep scheduler's history (DPM-Solver++, UniPC, PNDM) is kept per window, which avoids
the corruption of stepping windows one after another through a shared scheduler (diffusers issue #3494).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.guidance.perceptual import PerceptualLoss
from syncguide.guidance.semantic import Guidance, guidance_gradient
from syncguide.guidance.sync import SyncSchedule, ToImage, synchronize
from syncguide.models.sd import LatentDiffusion, PromptEmbeds
from syncguide.schedulers import predict_x0, shift_score, step_arguments
from syncguide.tiling import Window, anchor_index, crop_all, fuse

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]


@dataclass
class SyncOptions:
    """SyncDiffusion settings for the joint sampler: schedule, perceptual loss, memory bounds."""

    schedule: SyncSchedule
    loss: PerceptualLoss
    batch_size: int = 1
    checkpointing: bool = False


def predict_views(
    model: LatentDiffusion,
    scheduler: SchedulerMixin,
    views: torch.Tensor,
    t: torch.Tensor,
    embeds: PromptEmbeds,
    guidance_scale: float,
    rows_per_call: int,
) -> torch.Tensor:
    """The guided model output for every row of ``views`` ``(n, C, h, w)``, ``rows_per_call`` rows per UNet call."""
    outputs = []
    for start in range(0, views.shape[0], rows_per_call):
        rows = slice(start, start + rows_per_call)
        x = scheduler.scale_model_input(views[rows], t)
        outputs.append(model.predict(x, t, embeds.rows(rows), guidance_scale))
    return torch.cat(outputs)


def sample_joint(
    model: LatentDiffusion,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    windows: list[Window],
    embeds: PromptEmbeds,
    guidance_scale: float,
    view_batch_size: int = 1,
    sync: SyncOptions | None = None,
    callback: StepCallback | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    generator: torch.Generator | None = None,
    semantic: Guidance | None = None,
) -> torch.Tensor:
    """Denoise a latent canvas ``(B, C, H, W)`` over ``scheduler.timesteps`` (set beforehand).

    Each step: crop every window; if sync is active, take SyncDiffusion's gradient step on every non-anchor
    window; predict noise with CFG (``view_batch_size`` windows per UNet call); one scheduler step for all
    windows; average the windows back into the canvas. ``embeds`` holds B rows. ``callback(i, t, latents)`` may
    return replacement latents. ``semantic`` guidance (SDG) acts on each window's decoded x0 prediction and shifts
    its noise prediction (see :func:`semantic_shift`). Returns the final canvas latents ``(B, C, H, W)``.
    """
    n, b = len(windows), latents.shape[0]
    all_embeds = embeds.repeat(n)
    step_kwargs = step_arguments(scheduler, generator)
    n_steps = len(scheduler.timesteps)
    for i, t in enumerate(progress(scheduler.timesteps)):
        views = crop_all(latents, windows)
        weight = sync.schedule.weight_at(i) if sync else 0.0
        if weight > 0:
            views = _sync(model, scheduler, views, t, all_embeds, guidance_scale, windows, sync, weight)
        with torch.no_grad():
            out = predict_views(model, scheduler, views, t, all_embeds, guidance_scale, view_batch_size * b)
            if semantic is not None and semantic.active(i, n_steps):
                out = semantic_shift(model, scheduler, views, out, t, semantic, i, n_steps, view_batch_size * b)
            views = scheduler.step(out, t, views, return_dict=False, **step_kwargs)[0]
        latents = fuse(views, windows, latents.shape)
        if callback is not None:
            replaced = callback(i, t, latents)
            latents = latents if replaced is None else replaced
    return latents


def semantic_shift(
    model: LatentDiffusion,
    scheduler: SchedulerMixin,
    views: torch.Tensor,
    out: torch.Tensor,
    t: torch.Tensor,
    guidance: Guidance,
    i: int,
    n: int,
    rows_per_pass: int,
) -> torch.Tensor:
    """Model outputs of latent ``views`` ``(n, C, h, w)`` shifted by SDG computed on their decoded x0 predictions.

    F is evaluated on decode(x0(x_t, out)) in [-1, 1] as a clean image (``t=None``), with the model output held
    fixed, so the gradient reaches x_t through the x0 formula and the VAE decoder only (no UNet backward); then
    eps' = eps - sqrt(1 - abar_t) * grad (any prediction type, :func:`~syncguide.schedulers.shift_score`).
    """
    shifted = []
    for start in range(0, views.shape[0], rows_per_pass):
        rows = slice(start, start + rows_per_pass)

        def decoded_x0(x: torch.Tensor, rows: slice = rows) -> torch.Tensor:
            return model.decode(predict_x0(scheduler, x, out[rows], t)) * 2 - 1

        grad = guidance_gradient(guidance, views[rows], None, i, n, to_image=decoded_x0)
        shifted.append(shift_score(scheduler, out[rows], grad, t))
    return torch.cat(shifted)


def x0_images(
    model: LatentDiffusion, scheduler: SchedulerMixin, t: torch.Tensor, embeds: PromptEmbeds, guidance_scale: float
) -> ToImage:
    """``to_image(x, rows)``: the decoded x0 prediction in [0, 1] of noisy window latents ``x`` at timestep ``t``
    (``rows`` select their prompt embeddings); differentiable in ``x``."""

    def to_image(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = model.predict(scheduler.scale_model_input(x, t), t, embeds.rows(rows), guidance_scale)
        return model.decode(predict_x0(scheduler, x, out, t))

    return to_image


def _sync(
    model: LatentDiffusion,
    scheduler: SchedulerMixin,
    views: torch.Tensor,
    t: torch.Tensor,
    embeds: PromptEmbeds,
    guidance_scale: float,
    windows: list[Window],
    sync: SyncOptions,
    weight: float,
) -> torch.Tensor:
    to_image = x0_images(model, scheduler, t, embeds, guidance_scale)
    with model.gradient_checkpointing(sync.checkpointing):
        return synchronize(views, len(windows), anchor_index(windows), to_image, sync.loss, weight, sync.batch_size)
