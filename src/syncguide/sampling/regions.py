"""Region-based MultiDiffusion (a layout of prompts and masks), optionally synchronised by SyncDiffusion.

Every step, each prompt is denoised on every window its mask touches; all these (prompt, window) rows go through
the UNet together in batches and through *one* scheduler call (per-row history, as in :mod:`.joint`), and are fused
with their latent-size masks as weights. During the first steps, "bootstrapping" shows each foreground prompt a
flat random colour, noised to the current timestep, outside its mask, which keeps tight masks faithful. Sync pulls
every background row towards the background's anchor window (and, optionally, every region's rows towards that
region's own anchor), so the canvas keeps one style while each region keeps its content.

References:
    Bar-Tal et al., "MultiDiffusion: Fusing Diffusion Paths for Controlled Image Generation", ICML 2023, Sec. 4.2
    and its reference code ``region_based.py``.
    Lee et al., "SyncDiffusion: Coherent Montage via Synchronized Joint Diffusions", NeurIPS 2023 (layout-guided
    generation as an application).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.guidance.sync import synchronize
from syncguide.models.sd import LatentDiffusion, PromptEmbeds
from syncguide.sampling.joint import StepCallback, SyncOptions, predict_views, x0_images
from syncguide.schedulers import step_arguments
from syncguide.tiling import Window, anchor_index, crop, crop_all, fuse


@dataclass(frozen=True)
class RegionStack:
    """The (prompt, window) pairs denoised each step, prompt-major.

    Chunk j (B rows of the window stack) is prompt ``prompts[j]`` on ``windows[j]``; ``weights[j]`` ``(1, s, s)``
    is that prompt's mask (0/1) on the window.
    """

    windows: list[Window]
    prompts: list[int]
    weights: torch.Tensor

    def chunks_of(self, prompt: int) -> list[int]:
        """Indices of the chunks of ``prompt``, in window order."""
        return [j for j, k in enumerate(self.prompts) if k == prompt]

    def rows(self, chunks: list[int], b: int) -> torch.Tensor:
        """Row indices of ``chunks`` in a stack with ``b`` rows (images) per chunk."""
        return torch.tensor([j * b + r for j in chunks for r in range(b)], dtype=torch.long)


def region_stack(masks: torch.Tensor, windows: list[Window]) -> RegionStack:
    """Every (prompt, window) pair where the prompt's mask touches the window.

    Args:
        masks: ``(P, h, w)`` 0/1 masks on the latent canvas, background first (:meth:`Layout.masks`).
        windows: the canvas' windows.
    """
    chosen, prompts, weights = [], [], []
    for k in range(masks.shape[0]):
        for win in windows:
            tile = crop(masks[None, k : k + 1], win)[0]
            if tile.any():
                chosen.append(win)
                prompts.append(k)
                weights.append(tile)
    return RegionStack(chosen, prompts, torch.stack(weights))


def stack_embeds(embeds: list[PromptEmbeds], prompts: list[int]) -> PromptEmbeds:
    """Embeddings of a region stack: ``embeds[k]`` (B rows) for each chunk's prompt k, ``(n * B, L, D)``."""
    cond = torch.cat([embeds[k].cond for k in prompts])
    uncond = None if embeds[0].uncond is None else torch.cat([embeds[k].uncond for k in prompts])
    return PromptEmbeds(cond, uncond)


@dataclass
class Bootstrap:
    """MultiDiffusion's bootstrapping: during steps ``i < steps``, each foreground row's window outside its mask is
    replaced by one of ``colours`` ``(n, C, s, s)`` (encoded flat colour images), chosen at random by
    ``generator`` and noised to the step's timestep with the canvas' initial noise."""

    steps: int
    colours: torch.Tensor
    generator: torch.Generator | None = None


def flat_colours(
    model: LatentDiffusion, n: int, window: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Latents ``(n, C, window, window)`` of ``n`` flat images of uniformly random RGB colours."""
    rgb = torch.rand(n, 3, 1, 1, generator=generator, device=generator.device if generator else device)
    side = window * model.vae_scale
    return model.encode(rgb.to(device).expand(n, 3, side, side))


def bootstrap_views(
    views: torch.Tensor,
    inside: torch.Tensor,
    foreground: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    scheduler: SchedulerMixin,
    bootstrap: Bootstrap,
) -> torch.Tensor:
    """Rows of ``views`` ``(n, C, s, s)`` with their area outside the mask replaced by a noised flat colour.

    ``inside`` ``(n, 1, s, s)`` bool: each row's mask; ``foreground`` ``(n,)`` bool: the rows to bootstrap (not
    the background's); ``noise`` ``(n, C, s, s)``: each row's initial noise. Pixels inside the mask, and rows
    not in ``foreground``, are returned exactly as they were.
    """
    device = bootstrap.generator.device if bootstrap.generator else views.device
    pick = torch.randint(len(bootstrap.colours), (views.shape[0],), generator=bootstrap.generator, device=device)
    colour = bootstrap.colours[pick.to(views.device)]
    background = scheduler.add_noise(colour, noise, t.reshape(1))
    replace = foreground[:, None, None, None] & ~inside
    return torch.where(replace, background.to(views.dtype), views)


def sample_regions(
    model: LatentDiffusion,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    windows: list[Window],
    embeds: list[PromptEmbeds],
    masks: torch.Tensor,
    guidance_scale: float,
    view_batch_size: int = 1,
    bootstrap: Bootstrap | None = None,
    sync: SyncOptions | None = None,
    sync_regions: bool = False,
    callback: StepCallback | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Denoise a latent canvas ``(B, C, H, W)`` over ``scheduler.timesteps`` (set beforehand) with a layout.

    Args:
        embeds: one :class:`PromptEmbeds` (B rows) per prompt, background first.
        masks: ``(P, H, W)`` 0/1 fusion masks, background first (:meth:`syncguide.layout.Layout.masks`).
        view_batch_size: windows per UNet call (rows of any prompts).
        bootstrap: MultiDiffusion's bootstrapping (None: off).
        sync: SyncDiffusion on the background's rows (None or weight 0: region MultiDiffusion exactly).
        sync_regions: also pull each region's rows towards that region's own anchor window.
        callback: ``callback(i, t, latents)`` may return replacement latents.
    Returns:
        The final canvas latents ``(B, C, H, W)``.
    """
    b = latents.shape[0]
    stack = region_stack(masks.to(latents.device), windows)
    all_embeds = stack_embeds(embeds, stack.prompts)
    inside = stack.weights.repeat_interleave(b, 0) > 0
    foreground = torch.tensor(stack.prompts, device=latents.device).repeat_interleave(b) > 0
    noise = crop_all(latents, stack.windows)  # the initial noise of every row, for bootstrapping
    step_kwargs = step_arguments(scheduler, generator)
    for i, t in enumerate(progress(scheduler.timesteps)):
        views = crop_all(latents, stack.windows)
        if bootstrap is not None and i < bootstrap.steps:
            views = bootstrap_views(views, inside, foreground, noise, t, scheduler, bootstrap)
        weight = sync.schedule.weight_at(i) if sync else 0.0
        if weight > 0:
            to_image = x0_images(model, scheduler, t, all_embeds, guidance_scale)
            views = _sync(model, views, stack, to_image, sync, weight, sync_regions)
        with torch.no_grad():
            out = predict_views(model, scheduler, views, t, all_embeds, guidance_scale, view_batch_size * b)
            views = scheduler.step(out, t, views, return_dict=False, **step_kwargs)[0]
        latents = fuse(views, stack.windows, latents.shape, stack.weights)
        if callback is not None:
            replaced = callback(i, t, latents)
            latents = latents if replaced is None else replaced
    return latents


def _sync(
    model: LatentDiffusion,
    views: torch.Tensor,
    stack: RegionStack,
    to_image: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sync: SyncOptions,
    weight: float,
    sync_regions: bool,
) -> torch.Tensor:
    """SyncDiffusion within each synced prompt's rows, towards the centre window among those it touches."""
    b = views.shape[0] // len(stack.windows)
    prompts = sorted(set(stack.prompts)) if sync_regions else [0]
    views = views.clone()
    with model.gradient_checkpointing(sync.checkpointing):
        for k in prompts:
            chunks = stack.chunks_of(k)
            if len(chunks) < 2:
                continue
            rows = stack.rows(chunks, b).to(views.device)

            def group_image(x: torch.Tensor, local: torch.Tensor, rows: torch.Tensor = rows) -> torch.Tensor:
                return to_image(x, rows[local.to(rows.device)])

            anchor = anchor_index([stack.windows[j] for j in chunks])
            views[rows] = synchronize(views[rows], len(chunks), anchor, group_image, sync.loss, weight, sync.batch_size)
    return views
