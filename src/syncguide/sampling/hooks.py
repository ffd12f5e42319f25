"""Per-step work that plugs into the joint loop (:func:`syncguide.sampling.joint.sample_joint`).

- :class:`SyncHook`: SyncDiffusion's gradient step, pulling each synced prompt's rows towards its anchor window.
- :class:`BootstrapHook`: MultiDiffusion's bootstrapping of region rows (a noised flat colour outside the mask).
- :class:`SemanticHook`: SDG on every row's decoded x0 prediction, shifting its model output.

References:
    Lee et al., "SyncDiffusion: Coherent Montage via Synchronized Joint Diffusions", NeurIPS 2023, Algorithm 1.
    Bar-Tal et al., "MultiDiffusion", ICML 2023, Sec. 4.2 (bootstrapping) and its code ``region_based.py``.
    Liu et al., "More Control for Free! Image Synthesis with Semantic Diffusion Guidance", WACV 2023.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from syncguide.control import Control
from syncguide.guidance.perceptual import PerceptualLoss
from syncguide.guidance.semantic import Guidance, guidance_gradient
from syncguide.guidance.sync import SyncSchedule, synchronize
from syncguide.models.backbone import Backbone, iterate_rows
from syncguide.models.latent import vae_decode
from syncguide.sampling.denoiser import WindowDenoiser
from syncguide.sampling.plan import RowPlan
from syncguide.schedulers import add_noise, shift_score
from syncguide.tiling import crop_all


@dataclass(frozen=True)
class Step:
    """Where the loop is: step ``index`` of ``total`` at timestep ``t``, with the run's denoiser.

    ``cache`` carries work between hooks and the loop within the step: a hook that has already computed every
    row's model output for the views it returns (fast sync) leaves it under ``"output"`` and the loop steps with
    it instead of predicting again.
    """

    index: int
    t: torch.Tensor
    total: int
    denoiser: WindowDenoiser
    cache: dict = field(default_factory=dict)


class StepHook:
    """Per-step work; every method defaults to doing nothing."""

    def start(self, latents: torch.Tensor, plan: RowPlan) -> None:
        """Called once with the initial canvas ``(B, C, H, W)`` and the plan."""

    def before_predict(self, step: Step, views: torch.Tensor) -> torch.Tensor:
        """The rows ``(n, C, s, s)`` the model will see this step."""
        return views

    def after_predict(self, step: Step, views: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The model output ``(n, C, s, s)`` the scheduler will step (called without grad)."""
        return output


@dataclass
class SyncOptions:
    """SyncDiffusion settings: schedule, perceptual loss, windows per gradient pass, gradient checkpointing, and
    the fast mode's approximations, each switchable (all off: the exact method, bit for bit):

    - ``hold_output``: the model output of one no-grad forward pass is held constant in the x0 prediction, so the
      gradient reaches x_t through the x0 formula only (dx0/dx_t = 1/sqrt(abar_t) for epsilon models, 1 for flow
      matching: no denoiser backward), and that output is reused for the denoising step (no second forward on
      the updated latents);
    - ``decoder``: decodes x0 in the gradient path (and the anchor's target) instead of the backbone's VAE, e.g.
      diffusers' ``AutoencoderTiny`` (TAESD family); the final image is still decoded by the full VAE;
    - ``loss_size``: images are resized (bilinear, antialiased) to ``loss_size`` px on their longer side before
      the perceptual loss.
    """

    schedule: SyncSchedule
    loss: PerceptualLoss
    batch_size: int = 1
    checkpointing: bool = False
    hold_output: bool = False
    decoder: torch.nn.Module | None = None
    loss_size: int | None = None

    def perceptual(self) -> PerceptualLoss:
        """The loss as the gradient pass sees it: at ``loss_size`` when set."""
        if self.loss_size is None:
            return self.loss
        size, loss = self.loss_size, self.loss

        def resized(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return loss(shrink(a, size), shrink(b, size))

        return resized


def shrink(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` resized so that the longer side is ``size`` px (never enlarged)."""
    h, w = images.shape[-2:]
    scale = size / max(h, w)
    if scale >= 1:
        return images
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.interpolate(images, size=target, mode="bilinear", antialias=True, align_corners=False)


class SyncHook(StepHook):
    """SyncDiffusion within each synced prompt's rows, towards the centre window among those it touches.

    ``prompts``: the synced prompts (0, the background, for a panorama; every prompt with ``sync_regions``).
    """

    def __init__(self, options: SyncOptions, prompts: list[int] | None = None) -> None:
        self.options = options
        self.prompts = prompts
        self.groups: list[tuple[torch.Tensor, int, int]] = []  # (rows, windows, anchor) per synced prompt

    def start(self, latents: torch.Tensor, plan: RowPlan) -> None:
        b = latents.shape[0]
        prompts = sorted(set(plan.prompts)) if self.prompts is None else self.prompts
        chunks = {k: plan.chunks_of(k) for k in prompts}
        self.groups = [
            (plan.rows(c, b).to(latents.device), len(c), plan.anchor_of(k)) for k, c in chunks.items() if len(c) > 1
        ]

    def before_predict(self, step: Step, views: torch.Tensor) -> torch.Tensor:
        weight = self.options.schedule.weight_at(step.index)
        if weight == 0:
            return views
        options, denoiser = self.options, step.denoiser
        held = None
        if options.hold_output:
            with torch.no_grad():
                held = denoiser.output(views, step.t)
            step.cache["output"] = held
        views = views.clone()
        loss = options.perceptual()
        with denoiser.backbone.gradient_checkpointing(options.checkpointing):
            for rows, n_windows, anchor in self.groups:

                def to_image(x: torch.Tensor, local: torch.Tensor, rows: torch.Tensor = rows) -> torch.Tensor:
                    stack_rows = rows[local.to(rows.device)]
                    if held is None and options.decoder is None:
                        return denoiser.images(x, stack_rows, step.t)
                    output = held[stack_rows] if held is not None else denoiser.predict(x, step.t, stack_rows)
                    return self.decode(denoiser, denoiser.x0(x, output, step.t))

                synced = synchronize(
                    views[rows], n_windows, anchor, to_image, loss, weight, options.batch_size, denoiser.workers
                )
                views[rows] = synced
        return views

    def decode(self, denoiser: WindowDenoiser, x0: torch.Tensor) -> torch.Tensor:
        """x0 latents decoded in [0, 1] by the gradient-path decoder (the backbone's when none is set)."""
        if self.options.decoder is None:
            return denoiser.backbone.decode(x0)
        return vae_decode(self.options.decoder, x0, 0, denoiser.backbone.vae_scale)


@dataclass
class Bootstrap:
    """MultiDiffusion's bootstrapping: during steps ``i < steps``, each foreground row's window outside its mask is
    replaced by one of ``colours`` ``(n, C, s, s)`` (encoded flat colour images), chosen at random by
    ``generator`` and noised to the step's timestep with the canvas' initial noise."""

    steps: int
    colours: torch.Tensor
    generator: torch.Generator | None = None


def flat_colours(
    backbone: Backbone, n: int, window: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Latents ``(n, C, window, window)`` of ``n`` flat images of uniformly random RGB colours."""
    rgb = torch.rand(n, 3, 1, 1, generator=generator, device=generator.device if generator else device)
    side = window * backbone.vae_scale
    return backbone.encode(rgb.to(device).expand(n, 3, side, side))


class BootstrapHook(StepHook):
    """Bootstrapping of every foreground (region) row, during the first ``bootstrap.steps`` steps."""

    def __init__(self, bootstrap: Bootstrap) -> None:
        self.bootstrap = bootstrap

    def start(self, latents: torch.Tensor, plan: RowPlan) -> None:
        b = latents.shape[0]
        self.inside = plan.weights.repeat_interleave(b, 0) > 0
        self.foreground = torch.tensor(plan.prompts, device=latents.device).repeat_interleave(b) > 0
        self.noise = crop_all(latents, plan.windows)  # the initial noise of every row

    def before_predict(self, step: Step, views: torch.Tensor) -> torch.Tensor:
        if step.index >= self.bootstrap.steps:
            return views
        return bootstrap_views(views, self.inside, self.foreground, self.noise, step.t, step.denoiser, self.bootstrap)


def bootstrap_views(
    views: torch.Tensor,
    inside: torch.Tensor,
    foreground: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    denoiser: WindowDenoiser,
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
    background = add_noise(denoiser.scheduler, colour, noise, t)
    replace = foreground[:, None, None, None] & ~inside
    return torch.where(replace, background.to(views.dtype), views)


class ControlHook(StepHook):
    """Tells the call's ControlNet (:class:`syncguide.control.Control`) which step the loop is at, before any
    hook or the loop calls the model (its scale is 0 outside ``control_guidance_start/end``)."""

    def __init__(self, control: Control) -> None:
        self.control = control

    def before_predict(self, step: Step, views: torch.Tensor) -> torch.Tensor:
        self.control.step, self.control.total = step.index, step.total
        return views


class SemanticHook(StepHook):
    """SDG on every row: F is evaluated on the decoded x0 prediction in [-1, 1] as a clean image (``t=None``),
    with the model output held fixed, so the gradient reaches x_t through the x0 formula and the decoder only
    (no denoiser backward); then eps' = eps - sqrt(1 - abar_t) * grad (any prediction type,
    :func:`~syncguide.schedulers.shift_score`). ``rows_per_pass`` rows per gradient pass."""

    def __init__(self, guidance: Guidance, rows_per_pass: int) -> None:
        self.guidance = guidance
        self.rows_per_pass = rows_per_pass

    def after_predict(self, step: Step, views: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if not self.guidance.active(step.index, step.total):
            return output
        denoiser = step.denoiser
        passes = list(iterate_rows(views.shape[0], self.rows_per_pass))

        def shifted(k: int) -> torch.Tensor:
            rows = passes[k]

            def decoded_x0(x: torch.Tensor) -> torch.Tensor:
                return denoiser.backbone.decode(denoiser.x0(x, output[rows], step.t)) * 2 - 1

            grad = guidance_gradient(self.guidance, views[rows], None, step.index, step.total, to_image=decoded_x0)
            return shift_score(denoiser.scheduler, output[rows], grad, step.t)

        return denoiser.workers.map_rows(shifted, passes, torch.empty_like(output))
