"""The backbone seam: the one small object through which the joint sampler talks to a diffusion model.

The loop (:mod:`syncguide.sampling.joint`) never sees text encoders, VAEs, patch packing or a scheduler's
internals. Per call, a :class:`Backbone` answers four questions:

1. ``encode_prompt(prompts, negatives)`` -> :class:`Conditioning`: whatever the model is conditioned on, as
   named per-row tensors (one row per image). The loop only selects and repeats rows.
2. ``predict(x, t, cond, guidance_scale, positions)`` -> the model output for a stack of window latents
   ``(n, C, h, w)`` with classifier-free guidance. ``positions`` ``(n, 2)`` are each window's (top, left) on the
   canvas in pixels, for backbones that condition on where a crop lies.
3. ``x0(scheduler, x, output, t)`` -> the clean-latent prediction for the current scheduler, whatever the output
   parametrises (epsilon, v, sample, flow-matching velocity); see :func:`x0_from_output`.
4. ``decode(latents, wrap)`` -> images in [0, 1] (the full VAE, or any replacement decoder the backbone holds),
   and ``encode(images)`` for the other direction (bootstrapping colours).

The families (each in its own module, the loop unchanged):

- **SD 1.x/2.x** (:mod:`.sd`): rows ``prompt_embeds``; positions unused.
- **SDXL** (:mod:`.sdxl`): rows ``prompt_embeds`` (B, 77, 2048) and ``text_embeds`` (B, 1280); ``predict``
  builds ``add_time_ids`` per row from ``positions`` and the canvas (the ``micro_conditioning`` convention).
- **FLUX.1** (:mod:`.flux`) and **SD3** (:mod:`.sd3`): transformers, flow matching. The loop keeps handing over
  unpacked ``(n, C, h, w)`` window latents; FLUX's ``predict`` packs them into 2x2 patch tokens with a native
  image's ids and unpacks the velocity; :func:`x0_from_output` gives x0 = x_t - sigma_t * v, so sync and SDG work
  through ``x0`` unchanged; ``set_timesteps`` shifts FLUX's schedule by the window's token count. ``decode`` undoes
  the VAE's ``shift_factor`` and ``scaling_factor`` (16-channel latents).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from syncguide.schedulers import predict_x0

Index = slice | torch.Tensor


@dataclass
class Conditioning:
    """A backbone's conditioning for B images, as named tensors with one row per image.

    ``cond`` holds the prompt's tensors and ``uncond`` the negative prompt's (None: no classifier-free
    guidance); both map a name (``prompt_embeds``, ``text_embeds``, ...) to a tensor whose first dimension is B.
    """

    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor] | None = None

    @property
    def rows(self) -> int:
        """B, the number of rows."""
        return next(iter(self.cond.values())).shape[0]

    def select(self, index: Index) -> Conditioning:
        """The rows ``index`` (a slice or an index tensor)."""
        return self._map(lambda v: v[index.to(v.device) if isinstance(index, torch.Tensor) else index])

    def repeat(self, n: int) -> Conditioning:
        """``n`` copies of every row, copy-major: ``(n * B, ...)`` (the windows of each image)."""
        return self._map(lambda v: v.repeat(n, *[1] * (v.dim() - 1)))

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        """The rows of ``parts``, one after another."""
        first = parts[0]

        def join(get) -> dict[str, torch.Tensor]:
            return {k: torch.cat([get(p)[k] for p in parts]) for k in get(first)}

        uncond = None if first.uncond is None else join(lambda p: p.uncond)
        return Conditioning(join(lambda p: p.cond), uncond)

    def _map(self, fn) -> Conditioning:
        uncond = None if self.uncond is None else {k: fn(v) for k, v in self.uncond.items()}
        return Conditioning({k: fn(v) for k, v in self.cond.items()}, uncond)


class Backbone(Protocol):
    """What the joint sampler needs from a model family (see the module docstring)."""

    @property
    def window(self) -> int:
        """The model's native size in latent pixels (64 for SD 2-base)."""

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel."""

    @property
    def latent_channels(self) -> int:
        """Channels of the latent canvas."""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype latents are kept in."""

    def encode_prompt(
        self,
        prompts: list[str] | None,
        negatives: list[str] | None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        """Conditioning for B images; ``negatives`` (or ``negative_prompt_embeds``) enable CFG."""

    def predict(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The guided model output for window latents ``x`` ``(n, C, h, w)``; ``cond`` has n rows."""

    def x0(self, scheduler: SchedulerMixin, x: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-latent prediction of ``x`` at ``t`` from the model's ``output``; differentiable."""

    def set_timesteps(self, scheduler: SchedulerMixin, steps: int, device: torch.device, window: int) -> None:
        """Set ``scheduler``'s timesteps for ``steps`` steps as the family's own diffusers pipeline does for one
        image of ``window`` latent pixels square (FLUX: shifted by its token count)."""

    def decode(self, latents: torch.Tensor, wrap: int = 0) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, s*h, s*w)`` from latents; ``wrap`` columns of 360-degree padding."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents of images ``(B, 3, H, W)`` in [0, 1]."""

    def gradient_checkpointing(self, enabled: bool) -> AbstractContextManager[None]:
        """Within the block, checkpoint the denoiser's and decoder's blocks if ``enabled``."""


def x0_from_output(
    scheduler: SchedulerMixin, sample: torch.Tensor, output: torch.Tensor, timestep: torch.Tensor | int
) -> torch.Tensor:
    """x0 from a noisy ``sample`` and the model ``output`` at ``timestep`` for ``scheduler``.

    Flow matching (``FlowMatchEulerDiscreteScheduler``, x_t = (1 - sigma) x0 + sigma * noise, output = the
    velocity noise - x0): x0 = x_t - sigma_t * v. Variance-preserving schedulers: epsilon, v or sample
    prediction from ``alphas_cumprod`` (:func:`syncguide.schedulers.predict_x0`). Differentiable.
    """
    return predict_x0(scheduler, sample, output, timestep)


def iterate_rows(n: int, rows_per_call: int) -> Iterator[slice]:
    """Slices of ``rows_per_call`` rows covering ``range(n)``."""
    for start in range(0, n, rows_per_call):
        yield slice(start, start + rows_per_call)
