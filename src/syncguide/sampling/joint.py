"""The joint-diffusion loop: every step crops the canvas' rows, runs the hooks, predicts, steps, fuses.

All rows (every (prompt, window) pair of the :class:`~syncguide.sampling.plan.RowPlan`) are stepped together
through *one* scheduler call on the stack. Every scheduler update acts row by row, so a multistep scheduler's
history (DPM-Solver++, UniPC, PNDM) is kept per row, which avoids the corruption of stepping windows one after
another through a shared scheduler (diffusers issue #3494). Per-step work (SyncDiffusion's gradient step, SDG's
shift, bootstrapping) plugs in as :class:`~syncguide.sampling.hooks.StepHook` objects; fusion weights come from
the plan; the model is only seen through a :class:`~syncguide.sampling.denoiser.WindowDenoiser`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from syncguide.errors import NonFiniteError
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.sampling.hooks import Step, StepHook
from syncguide.sampling.plan import RowPlan
from syncguide.schedulers import step_arguments
from syncguide.tiling import crop_all, fuse

# callback(i, t, latents, denoised) -> replacement latents or None; denoised is None unless asked for.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor | None]


def sample_joint(
    denoiser: WindowDenoiser,
    latents: torch.Tensor,
    plan: RowPlan,
    hooks: Sequence[StepHook] = (),
    callback: StepCallback | None = None,
    denoised: bool = False,
    progress: Callable[[Iterable], Iterable] = iter,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """Denoise a latent canvas ``(B, C, H, W)`` over ``scheduler.timesteps`` (set beforehand).

    Each step: crop every row of ``plan``; each hook's ``before_predict`` (bootstrapping, sync); the model output
    of every row; each hook's ``after_predict`` (SDG); one scheduler step for all rows; fuse the rows back with
    the plan's weights. ``callback(i, t, latents, denoised)`` may return replacement latents; with ``denoised``
    it also gets the fused x0 prediction ``(B, C, H, W)``. ``eta`` goes to schedulers that take it (DDIM).
    Returns the final canvas latents ``(B, C, H, W)``; :class:`~syncguide.errors.NonFiniteError` as soon as a
    step leaves NaN or infinite values.
    """
    scheduler = denoiser.scheduler
    step_kwargs = step_arguments(scheduler, generator, eta=eta)
    for hook in hooks:
        hook.start(latents, plan)
    n_steps = len(scheduler.timesteps)
    for i, t in enumerate(progress(scheduler.timesteps)):
        step = Step(i, t, n_steps, denoiser)
        views = crop_all(latents, plan.windows)
        for hook in hooks:
            views = hook.before_predict(step, views)
        with torch.no_grad():
            out = step.cache["output"] if "output" in step.cache else denoiser.output(views, t)
            for hook in hooks:
                out = hook.after_predict(step, views, out)
            x0 = fuse(denoiser.x0(views, out, t), plan.windows, latents.shape, plan.weights) if denoised else None
            views = scheduler.step(out, t, views, return_dict=False, **step_kwargs)[0]
        latents = fuse(views, plan.windows, latents.shape, plan.weights)
        if not torch.isfinite(latents).all():
            raise NonFiniteError(i, n_steps)
        if callback is not None:
            replaced = callback(i, t, latents, x0)
            latents = latents if replaced is None else replaced
    return latents
